"""A small host for calico-node tests: a "host" namespace with a few interfaces and a "gateway" namespace.

    host ns  cnh-<run>                              gateway ns  cng-<run>
      en<run>a  198.19.1.3/24  fd00:c0de:1::3/64  ===  en<run>b  198.19.1.254/24  fd00:c0de:1::fe/64
      ex<run>a  198.19.2.3/24                     ===  ex<run>b  198.19.2.254/24
      docker<run>  198.19.9.1/24 (Calico never picks docker*)  ===  dk<run> (no address)
      default routes via 198.19.1.254 and fd00:c0de:1::fe

Interfaces are created in that order, so their indexes rise in that order (first-found scans the highest
first). Every command names a namespace this fixture made; both are deleted afterwards, also on failure, and
an atexit hook is the backstop. The tests themselves run calico-node inside the host namespace with
`ip netns exec`, and must hold /tmp/calico-netns.lock (run them under flock, as `make test` does).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CALICO_NODE = str(Path(sys.executable).parent / "calico-node")


def sh(*argv: str, check: bool = True, timeout: float = 20, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class NodeHost:
    run: str
    host: str = ""
    gateway: str = ""
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.host, self.gateway = f"cnh-{self.run}", f"cng-{self.run}"
        self.en, self.ex, self.docker = f"en{self.run}a", f"ex{self.run}a", f"docker{self.run}"

    def build(self) -> None:
        for ns in (self.host, self.gateway):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
               "net.ipv6.conf.default.accept_dad=0")
        links = [
            (self.en, f"en{self.run}b", ["198.19.1.3/24", "fd00:c0de:1::3/64"], ["198.19.1.254/24", "fd00:c0de:1::fe/64"]),
            (self.ex, f"ex{self.run}b", ["198.19.2.3/24"], ["198.19.2.254/24"]),
            (self.docker, f"dk{self.run}", ["198.19.9.1/24"], []),
        ]
        for mine, theirs, my_addrs, their_addrs in links:
            # Created inside the host namespace, the peer sent straight to the gateway: nothing touches the root.
            sh("ip", "-n", self.host, "link", "add", mine, "type", "veth", "peer", "name", theirs,
               "netns", self.gateway)
            for ns, dev, addrs in ((self.host, mine, my_addrs), (self.gateway, theirs, their_addrs)):
                for a in addrs:
                    sh("ip", "-n", ns, "addr", "add", a, "dev", dev, *(["nodad"] if ":" in a else []))
                sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.host, "route", "add", "default", "via", "198.19.1.254")
        sh("ip", "-n", self.host, "-6", "route", "add", "default", "via", "fd00:c0de:1::fe")

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()

    def node(self, *args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`calico-node ARGS` inside the host namespace."""
        return sh("ip", "netns", "exec", self.host, CALICO_NODE, *args, check=False, timeout=timeout, env=env)


def require_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("calico-node tests need root (network namespaces)")
    for tool in ("ip", *tools):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")


@pytest.fixture
def test_host() -> Iterator[NodeHost]:
    require_root_tools()
    host = NodeHost(secrets.token_hex(3))
    atexit.register(host.close)
    try:
        host.build()
        yield host
    finally:
        host.close()
        atexit.unregister(host.close)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory under /tmp: BIRD's control socket path must fit in 108 bytes."""
    path = Path(f"/tmp/cn{secrets.token_hex(3)}")
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

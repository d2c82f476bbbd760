"""A small BGP world: host namespaces on one bridge, each running BIRD and the real renderer daemon.

In: a run id and a host count. Out: `BGPFabric` with hosts `h1..hN` (`cbgp-<run>-hN`, `198.19.0.N/24` and
`fd00:b9::N/64` on `eth0`, a default route via the fabric namespace's bridge at `.254`), an embedded datastore
file the test writes resources into, and per host a directory `/tmp/cbgp-<run>/hN` (short: BIRD's control
socket path must stay under 108 bytes) holding `bird.cfg`, `bird.ctl` and the logs.

Per host, `start_daemon()` runs `calico-bgp-daemon` inside the namespace (as `calico-node -confd` would) and
`start_bird()` runs `bird -f` there once the daemon has written `bird.cfg` (as the supervisor would). Every
process is started here and stopped by its PID; `close()` stops them and deletes every namespace and the
directory, also after a failure (atexit as a backstop).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from calico.bgp.bird import BirdSocket, bird_command
from calico.bgp.sessions import BGPSession, bird_sessions

BIN = Path(sys.executable).parent
FABRIC_V4 = "198.19.0.{}/24"
FABRIC_V6 = "fd00:b9::{}/64"
GATEWAY_V4 = "198.19.0.254"
GATEWAY_V6 = "fd00:b9::fe"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def wait_for(what: str, cond: Callable[[], object], timeout: float = 20.0, interval: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Host:
    name: str
    index: int
    netns: str
    directory: Path
    bird: subprocess.Popen[bytes] | None = None
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def ipv4(self) -> str:
        return FABRIC_V4.format(self.index).split("/")[0]

    @property
    def ipv6(self) -> str:
        return FABRIC_V6.format(self.index).split("/")[0]

    @property
    def config(self) -> Path:
        return self.directory / "bird.cfg"

    @property
    def socket(self) -> Path:
        return self.directory / "bird.ctl"

    def sessions(self) -> list[BGPSession]:
        return bird_sessions(self.socket)

    def established(self) -> set[str]:
        return {s.peer_address for s in self.sessions() if s.established}

    def routes(self, version: int = 4) -> list[dict[str, object]]:
        out = sh("ip", "-n", self.netns, "-j", f"-{version}", "route", "show")
        return json.loads(out or "[]")

    def bird_routes(self, version: int = 4) -> dict[str, str]:
        """Destination -> gateway (or "blackhole") of the routes BIRD put into this host's kernel."""
        host_len = 32 if version == 4 else 128
        return {
            (dst if "/" in dst else f"{dst}/{host_len}"): str(r.get("gateway") or r.get("type"))
            for r in self.routes(version)
            if r.get("protocol") == "bird" and (dst := str(r["dst"]))
        }

    def command(self, command: str) -> str:
        return asyncio.run(BirdSocket(self.socket).command(command)).text()

    def exported(self, protocol: str) -> set[str]:
        """The prefixes BIRD sends to the peer of `protocol`."""
        reply = asyncio.run(BirdSocket(self.socket).command(f"show route export {protocol}"))
        firsts = [text.split()[0] for code, text in reply.lines if code == 1007 and text[:1] not in ("", " ", "\t")]
        return {f for f in firsts if "/" in f}  # prefixes, not the "Table master4:" heading

    def ss(self) -> str:
        return sh("ip", "netns", "exec", self.netns, "ss", "-tnie", "state", "established")

    def ip(self, *args: str) -> str:
        return sh("ip", "-n", self.netns, *args)


@dataclass
class BGPFabric:
    run_id: str
    count: int = 3
    hosts: dict[str, Host] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(f"/tmp/cbgp-{self.run_id}")
        self.datastore = self.directory / "calico.db"
        self.fabric = f"cbgp-{self.run_id}-fab"
        atexit.register(self.close)
        try:
            self.directory.mkdir(parents=True)
            self._add_ns(self.fabric)
            self._ip(self.fabric, "link", "add", "br0", "type", "bridge")
            self._ip(self.fabric, "link", "set", "br0", "up")
            self._ip(self.fabric, "addr", "add", f"{GATEWAY_V4}/24", "dev", "br0")
            self._ip(self.fabric, "-6", "addr", "add", f"{GATEWAY_V6}/64", "dev", "br0", "nodad")
            for i in range(1, self.count + 1):
                self._add_host(i)
        except BaseException:
            self.close()
            raise

    def _ip(self, ns: str, *args: str) -> None:
        sh("ip", "-n", ns, *args)

    def _add_ns(self, name: str) -> None:
        self._namespaces.append(name)  # recorded first: close() removes it even if what follows fails
        sh("ip", "netns", "add", name)
        self._ip(name, "link", "set", "lo", "up")

    def _add_host(self, i: int) -> None:
        name = f"h{i}"
        host = Host(name, i, f"cbgp-{self.run_id}-{name}", self.directory / name)
        host.directory.mkdir()
        self._add_ns(host.netns)
        sh("ip", "netns", "exec", host.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        port = f"p{self.run_id}{name}"
        self._ip(self.fabric, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        self._ip(self.fabric, "link", "set", port, "master", "br0")
        self._ip(self.fabric, "link", "set", port, "up")
        self._ip(host.netns, "link", "set", "eth0", "up")
        self._ip(host.netns, "addr", "add", FABRIC_V4.format(i), "dev", "eth0")
        self._ip(host.netns, "-6", "addr", "add", FABRIC_V6.format(i), "dev", "eth0", "nodad")
        self._ip(host.netns, "route", "add", "default", "via", GATEWAY_V4)
        self._ip(host.netns, "-6", "route", "add", "default", "via", GATEWAY_V6)
        self.hosts[name] = host

    # --- processes --------------------------------------------------------------------------------------------

    def env(self, host: Host) -> dict[str, str]:
        return {
            **os.environ,
            "NODENAME": host.name,
            "DATASTORE_TYPE": "embedded",
            "CALICO_EMBEDDED_PATH": str(self.datastore),
            "CALICO_CONFD_DIR": str(host.directory),
            "CALICO_RUN_DIR": str(host.directory),
            "CALICO_BGP_SECRETS_DIR": str(self.directory / "secrets"),
            "BGP_LOGSEVERITYSCREEN": "debug",
        }

    def start_daemon(self, host: Host) -> None:
        log = (host.directory / "daemon.log").open("ab")
        host.daemon = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, str(BIN / "calico-bgp-daemon")],
            env=self.env(host), stdout=log, stderr=log,
        )

    def start_bird(self, host: Host) -> int:
        wait_for(f"{host.name}'s bird.cfg", host.config.exists)
        log = (host.directory / "bird.log").open("ab")
        host.bird = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, *bird_command(host.config, host.socket)],
            stdout=log, stderr=log,
        )
        wait_for(f"{host.name}'s BIRD socket", lambda: self._answers(host))
        return host.bird.pid

    @staticmethod
    def _answers(host: Host) -> bool:
        try:
            host.sessions()
        except Exception:
            return False
        return True

    def kill_bird(self, host: Host) -> None:
        assert host.bird is not None
        host.bird.send_signal(signal.SIGKILL)
        host.bird.wait(10)
        host.bird = None
        host.socket.unlink(missing_ok=True)

    def logs(self, host: Host) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(host.directory.glob("*.log"))
        )

    # --- teardown ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        for host in self.hosts.values():
            for proc in (host.daemon, host.bird):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(5)
            host.daemon = host.bird = None
        for ns in reversed(self._namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        atexit.unregister(self.close)

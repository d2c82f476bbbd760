"""Fixtures for full-stack lab tests: `lab_factory` builds labs with `calico-lab up` and always tears them down.

Each lab gets a unique name and lives under a per-module temporary CALICO_LAB_DIR, so runs never collide; every
lab a factory made is brought `down` when its scope ends, also when a test failed. Helpers run the installed
`calico-lab` and `calicoctl` against the lab exactly as a user would (`eval "$(calico-lab env)"`), and a few
do the same work in-process where spawning a CLI per call would dominate the run time (probes).

Traffic helpers are bounded: every flow has a fixed attempt count, a per-attempt timeout and a wall-clock cap.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from calico.lab.probe import probe
from calico.lab.state import LabState

BIN = Path(sys.executable).parent
CALICO_LAB = str(BIN / "calico-lab")
CALICOCTL = str(BIN / "calicoctl")


def _require_tools(datastore: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("lab tests need root (network namespaces)")
    for tool in ("ip", "nft", "iptables", "ipset"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    if datastore == "etcd" and not shutil.which("etcd"):
        pytest.skip("etcd not installed")


# A bounded stream of short round trips, run inside the source workload's namespace. One JSON line per attempt:
# {"t": seconds since start, "ok": bool}. Never more than COUNT attempts nor DURATION + TIMEOUT seconds.
FLOW_SCRIPT = r"""
import json, socket, sys, time
addr, port, proto, count, interval, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), \
    float(sys.argv[5]), float(sys.argv[6])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
start = time.monotonic()
for i in range(count):
    t = time.monotonic()
    s = socket.socket(fam, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if proto == "udp":
            s.sendto(b"flow%d" % i, (addr, port))
            ok = s.recvfrom(64)[0] == b"flow%d" % i
        else:
            s.connect((addr, port))
            s.sendall(b"flow%d" % i)
            ok = s.recv(64) == b"flow%d" % i
    except OSError:
        ok = False
    finally:
        s.close()
    print(json.dumps({"t": round(t - start, 3), "ok": ok}), flush=True)
    time.sleep(max(0.0, interval - (time.monotonic() - t)))
"""


@dataclass
class Flow:
    """A running bounded flow (see FLOW_SCRIPT); `results()` waits for it and parses its lines."""

    proc: subprocess.Popen[str]
    what: str

    def results(self, timeout: float = 60) -> list[dict[str, object]]:
        out, err = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, f"flow {self.what} crashed: {err}"
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@dataclass
class Lab:
    """One lab brought up by `calico-lab up`; `state` is re-read from state.json on every access."""

    name: str
    root: Path
    dataplane: str
    datastore: str
    env: dict[str, str] = field(default_factory=dict)
    _spawned: list[subprocess.Popen[str]] = field(default_factory=list)

    # --- CLIs -----------------------------------------------------------------------------------------------
    def cli(self, *args: str, ok: bool | None = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """`calico-lab ARGS --name <this lab>`; `ok=True` asserts success, `ok=False` failure, None: don't care."""
        proc = subprocess.run([CALICO_LAB, *args, "--name", self.name], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        self._check(proc, ["calico-lab", *args], ok)
        return proc

    def ctl(self, *args: str, stdin: str | None = None, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([CALICOCTL, *args], env=self.env, input=stdin, capture_output=True, text=True,
                              timeout=60, check=False)
        self._check(proc, ["calicoctl", *args], ok)
        return proc

    @staticmethod
    def _check(proc: subprocess.CompletedProcess[str], argv: list[str], ok: bool | None) -> None:
        if ok is True:
            assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        elif ok is False:
            assert proc.returncode != 0, f"{' '.join(argv)} should have failed:\n{proc.stdout}"

    def apply(self, manifest: str) -> None:
        self.ctl("apply", "-f", "-", stdin=manifest)

    def delete(self, manifest: str) -> None:
        self.ctl("delete", "-f", "-", stdin=manifest, ok=None)

    def add_workload(self, name: str, labels: str = "", *extra: str) -> None:
        self.cli("workload", "add", name, "--labels", labels, *extra)

    # --- state ----------------------------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def state(self) -> LabState:
        return LabState.from_json((self.dir / "state.json").read_text())

    def host_ns(self, host: str = "h1") -> str:
        return self.state.hosts[host].netns

    def felix_pid(self, host: str = "h1") -> int:
        return self.state.hosts[host].felix_pid

    def felix_log(self, host: str = "h1") -> str:
        return (self.dir / host / "felix.log").read_text(errors="replace")

    def in_host(self, *argv: str, host: str = "h1", ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the host namespace (never the root one)."""
        proc = subprocess.run(["ip", "netns", "exec", self.host_ns(host), *argv], capture_output=True, text=True,
                              timeout=30, check=False)
        self._check(proc, list(argv), ok)
        return proc

    def readiness(self, host: str = "h1") -> int:
        """HTTP status of felix's /readiness, asked from inside the host namespace (0: no answer)."""
        code = ("import urllib.request,urllib.error\n"
                "try: print(urllib.request.urlopen('http://127.0.0.1:9099/readiness',timeout=2).status)\n"
                "except urllib.error.HTTPError as e: print(e.code)\n"
                "except OSError: print(0)\n")
        out = self.in_host(sys.executable, "-c", code, host=host).stdout.strip()
        return int(out or 0)

    def status(self) -> dict[str, Any]:
        """`calico-lab status --json`: hosts (processes, BGP sessions, blocks, routes) and workloads."""
        return json.loads(self.cli("status", "--json").stdout)

    def host_status(self, host: str) -> dict[str, Any]:
        return next(h for h in self.status()["hosts"] if h["name"] == host)

    def routes(self, host: str, proto: str = "bird") -> dict[str, str]:
        """The host's routes of one protocol (bird, or felix's 80): destination -> the rest of the route."""
        out = {}
        for fam in ("-4", "-6"):
            res = self.in_host("ip", "-j", fam, "route", "show", "proto", "80" if proto == "felix" else proto,
                               host=host)
            for r in json.loads(res.stdout or "[]"):
                dst = r["dst"] if "/" in r["dst"] or r["dst"] == "default" else (
                    f"{r['dst']}/128" if ":" in r["dst"] else f"{r['dst']}/32")
                out[dst] = f"{r.get('type', '')} via {r.get('gateway', '-')} dev {r.get('dev', '-')}"
        return out

    # --- traffic --------------------------------------------------------------------------------------------
    def can(self, src: str, dst: str, proto: str = "tcp", port: int = 8080, ipv6: bool = False,
            timeout: float = 0.5) -> bool:
        """One probe, in-process (the same code `calico-lab probe` runs)."""
        st = self.state
        d = st.workloads[dst]
        return probe(st.workloads[src].netns, d.netns, d.ipv6 if ipv6 else d.ipv4, proto, port, timeout).ok

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
        """Poll `cond` until true; returns the seconds it took; fails the test after `timeout`."""
        start = time.monotonic()
        while True:
            if cond():
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                pytest.fail(f"{what}: not true within {timeout:.1f}s")
            time.sleep(interval)

    def listen(self, dst: str, port: int, proto: str = "tcp", seconds: float = 30, ipv6: bool = False) -> None:
        """A bounded echo listener in `dst` (killed at teardown at the latest)."""
        w = self.state.workloads[dst]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", w.netns, sys.executable, "-m", "calico.lab.probe_agent", "listen",
             w.ipv6 if ipv6 else w.ipv4, str(port), proto, str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._spawned.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "listener did not start"

    def flow(self, src: str, dst: str, port: int, proto: str = "tcp", count: int = 40, interval: float = 0.15,
             timeout: float = 0.3, ipv6: bool = False) -> Flow:
        """Start `count` short round trips src -> dst, one every `interval` seconds, in the background."""
        st = self.state
        d = st.workloads[dst]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", st.workloads[src].netns, sys.executable, "-c", FLOW_SCRIPT,
             d.ipv6 if ipv6 else d.ipv4, str(port), proto, str(count), str(interval), str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._spawned.append(proc)
        return Flow(proc, f"{src}->{dst}:{port}/{proto}")

    def stop_spawned(self) -> None:
        for proc in self._spawned:
            if proc.poll() is None:
                proc.kill()  # only processes this helper started, by their Popen handle
            proc.communicate(timeout=10)
        self._spawned.clear()


LabFactory = Callable[..., Lab]


def _factory(root: Path) -> Iterator[LabFactory]:
    labs: list[Lab] = []

    def make(dataplane: str = "nftables", datastore: str = "embedded", *up_args: str) -> Lab:
        _require_tools(datastore)
        lab = Lab(name=f"t{secrets.token_hex(3)}", root=root, dataplane=dataplane, datastore=datastore)
        lab.env = {**os.environ, "CALICO_LAB_DIR": str(root)}
        labs.append(lab)  # registered before `up`, so a half-built lab is torn down too
        lab.cli("up", "--dataplane", dataplane, "--datastore", datastore, *up_args)
        for line in lab.cli("env").stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            lab.env[key] = value
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.stop_spawned()
            lab.cli("down", ok=None)


@pytest.fixture(scope="module")
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFactory]:
    """Labs shared by the tests of one module; all brought down when the module is done."""
    yield from _factory(tmp_path_factory.mktemp("labs"))


@pytest.fixture
def fresh_lab_factory(tmp_path: Path) -> Iterator[LabFactory]:
    """Labs for one test only (tests that break things on purpose)."""
    yield from _factory(tmp_path / "labs")

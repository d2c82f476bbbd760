"""Starting and stopping the lab's daemons: etcd members (in the router namespace), the loopback gateway to them,
calico-node per host (`calico.lab.nodes`).

Each daemon is started in its own session (it outlives the `calico-lab` command that started it), logs to the
lab directory, and is stopped only by the PID the lab recorded, after checking that PID still runs the command
the lab started (so a recycled PID is never signalled).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from calico.lab.netns import LabError, exec_argv, run
from calico.lab.plan import ETCD_CLIENT_PORTS, ETCD_PEER_PORTS

ETCD_PORT = 2379


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    return proc.pid


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int, marker: str) -> bool:
    return pid > 0 and marker in _cmdline(pid)


def stop(pid: int, marker: str, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; only when `pid` still runs a command containing `marker`."""
    if not alive(pid, marker):
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, marker):
        time.sleep(0.05)
    if alive(pid, marker):
        os.killpg(pid, signal.SIGKILL)


def kill(pid: int, marker: str, timeout: float = 5.0) -> None:
    """SIGKILL at once (a crash, not a shutdown) and wait until it is gone; same PID check as `stop`."""
    if not alive(pid, marker):
        return
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, marker):
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_member_argv(router_ns: str, addr: str, index: int, members: int, data_dir: Path) -> list[str]:
    """Member `index` of a `members`-member cluster: clients on `addr`, one port per member; peers on loopback."""
    url = f"http://{addr}:{ETCD_CLIENT_PORTS[index]}"
    peer = f"http://127.0.0.1:{ETCD_PEER_PORTS[index]}"
    cluster = ",".join(f"m{i}=http://127.0.0.1:{ETCD_PEER_PORTS[i]}" for i in range(members))
    return exec_argv(router_ns, [
        "etcd", "--name", f"m{index}", "--data-dir", str(data_dir),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", cluster, "--initial-cluster-state", "new",
        # Quick elections: a killed member's followers elect a new leader within about a second.
        "--heartbeat-interval", "100", "--election-timeout", "1000",
    ])


def start_etcd(fabric_ns: str, addr: str, data_dir: Path, log: Path) -> int:
    """A one-member etcd (the single-host test worlds use it)."""
    return spawn(etcd_member_argv(fabric_ns, addr, 0, 1, data_dir), log)


def start_gateways(ns: str, addr: str, targets: list[int], log: Path) -> tuple[int, list[int]]:
    """One loopback listener per target port, all in one gateway process; returns its pid and the ports."""
    ports = [free_port() for _ in targets]
    pairs = [f"{p}:{t}" for p, t in zip(ports, targets, strict=True)]
    pid = spawn([sys.executable, "-m", "calico.lab.gateway", ns, addr, *pairs], log)
    return pid, ports


def start_gateway(fabric_ns: str, addr: str, log: Path) -> tuple[int, int]:
    pid, ports = start_gateways(fabric_ns, addr, [ETCD_PORT], log)
    return pid, ports[0]


def wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise LabError(f"{what} did not become ready within {timeout:.0f}s ({url})")


def wait_felix_ready(host_ns: str, port: int, timeout: float) -> None:
    """Readiness is served on the host namespace's loopback, so ask from inside it."""
    code = (
        "import sys,time,urllib.request\n"
        f"d=time.monotonic()+{timeout}\n"
        "while time.monotonic()<d:\n"
        "  try:\n"
        f"    urllib.request.urlopen('http://127.0.0.1:{port}/readiness',timeout=1); sys.exit(0)\n"
        "  except Exception: time.sleep(0.1)\n"
        "sys.exit(1)\n"
    )
    res = run(*exec_argv(host_ns, [sys.executable, "-c", code]), check=False, timeout=timeout + 10)
    if res.returncode != 0:
        raise LabError(f"calico-felix in {host_ns} did not become ready within {timeout:.0f}s")

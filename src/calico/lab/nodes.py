"""One `calico-node` per lab host: its environment, starting and stopping it, and holding its children.

calico-node supervises felix, the BGP renderer (confd) and BIRD; it records each child's pid in the host's run
directory (`<child>.pid`) and leaves a child stopped while a hold file (`hold/<child>`) exists there. The lab's
fault verbs use exactly that: stop = hold + SIGTERM (or SIGKILL) the child by its recorded pid; start = remove
the hold (the supervisor starts it again). Stopping the whole node stops the supervisor, which stops its
children and leaves routes and rules in place, as on a real host.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from calico.lab import daemons
from calico.lab.netns import LabError, exec_argv
from calico.lab.state import Host, LabState

HEALTH_PORT = 9099
CHILDREN = ("felix", "confd", "bird")
MARKERS = {"felix": "calico-node -felix", "confd": "calico-node -confd", "bird": "bird"}


def datastore_env(state: LabState, inside: bool) -> dict[str, str]:
    """How to reach the lab's datastore: from inside a lab namespace, or from the root namespace."""
    if state.datastore == "embedded":
        return {"DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": state.embedded_path}
    if inside:
        return {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": state.etcd_endpoint}
    return {"DATASTORE_TYPE": "etcdv3",
            "ETCD_ENDPOINTS": ",".join(f"http://127.0.0.1:{p}" for p in state.gateway_ports)}


FLOW_LOG_FLUSH = 2  # seconds


def node_env(state: LabState, host: Host, lab_dir: Path) -> dict[str, str]:
    """The environment every calico-node of this lab runs with (shared by `up` and `node start`)."""
    refresh = f"{state.refresh_interval:g}"
    return {
        **os.environ, **datastore_env(state, inside=True),
        "NODENAME": host.name,
        "IP": "autodetect", "IP_AUTODETECTION_METHOD": "interface=eth0",
        "IP6": "autodetect", "IP6_AUTODETECTION_METHOD": "interface=eth0",
        "CALICO_NETWORKING_BACKEND": "bird",
        "CALICO_CONFD_DIR": str(lab_dir / host.name), "CALICO_RUN_DIR": host.run_dir,
        "CALICO_LOG_DIR": str(lab_dir / host.name), "CALICO_NODENAME_FILE": "none",
        "FELIX_DATAPLANEBACKEND": state.dataplane, "FELIX_HEALTHENABLED": "true",
        "FELIX_HEALTHPORT": str(HEALTH_PORT), "FELIX_IPTABLESREFRESHINTERVAL": refresh,
        # Each host its own MTU file (Felix's default, /var/lib/calico/mtu, is the machine's, shared by all hosts).
        "FELIX_MTUFILEPATH": str(lab_dir / host.name / "mtu"),
        "FELIX_IPSETSREFRESHINTERVAL": refresh,
        # Flow logs on, flushed every few seconds (Calico's default is 5 minutes): `calico-lab flows`.
        "FELIX_FLOWLOGSFILEENABLED": "true", "FELIX_FLOWLOGSFILEDIRECTORY": str(flow_log_dir(lab_dir, host.name)),
        "FELIX_FLOWLOGSFLUSHINTERVAL": str(FLOW_LOG_FLUSH),
    }


def flow_log_dir(lab_dir: Path, host: str) -> Path:
    return lab_dir / host / "flows"


def start_node(state: LabState, host: Host, lab_dir: Path) -> None:
    Path(host.run_dir).mkdir(parents=True, exist_ok=True)
    (lab_dir / host.name).mkdir(parents=True, exist_ok=True)
    node = str(Path(sys.executable).parent / "calico-node")
    host.node_pid = daemons.spawn(exec_argv(host.netns, [node]), lab_dir / f"node-{host.name}.log",
                                  env=node_env(state, host, lab_dir))


def stop_node(host: Host, kill: bool = False) -> None:
    """SIGTERM calico-node (it stops its children, leaving routes and rules) or, with `kill`, SIGKILL the
    supervisor and every child at once (a host crash)."""
    if kill:
        pids = [host.child_pid(c) for c in CHILDREN]
        daemons.kill(host.node_pid, "calico-node")
        for child, pid in zip(CHILDREN, pids, strict=True):
            daemons.kill(pid, MARKERS[child])
    else:
        daemons.stop(host.node_pid, "calico-node", timeout=15)
    host.node_pid = 0


def node_running(host: Host) -> bool:
    return daemons.alive(host.node_pid, "calico-node")


def hold(host: Host, child: str, on: bool) -> None:
    d = Path(host.run_dir) / "hold"
    d.mkdir(parents=True, exist_ok=True)
    if on:
        (d / child).touch()
    else:
        (d / child).unlink(missing_ok=True)


def stop_child(host: Host, child: str, kill: bool = False) -> int:
    """Hold the child and stop it; returns the pid that was stopped (0 if none ran)."""
    hold(host, child, True)
    pid = host.child_pid(child)
    if kill:
        daemons.kill(pid, MARKERS[child])
    else:
        daemons.stop(pid, MARKERS[child])
    return pid


def start_child(host: Host, child: str, wait: float = 30.0) -> int:
    """Release the hold; wait until calico-node has started a new child; returns its pid."""
    old = host.child_pid(child)
    hold(host, child, False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pid = host.child_pid(child)
        if pid and pid != old and daemons.alive(pid, MARKERS[child]):
            return pid
        if pid and pid == old and daemons.alive(pid, MARKERS[child]):
            return pid  # it was never stopped
        time.sleep(0.05)
    raise LabError(f"calico-node on {host.name} did not start {child} within {wait:.0f}s")


def restart_child(host: Host, child: str, kill: bool = False, wait: float = 30.0) -> tuple[int, int]:
    """Stop the child (SIGTERM, or SIGKILL with `kill`) and let calico-node start it again at once: the hold
    stays until calico-node has seen the exit (its pid file goes), so it restarts without a back-off."""
    old = stop_child(host, child, kill)
    deadline = time.monotonic() + wait
    while host.child_pid(child) == old and old and time.monotonic() < deadline:
        time.sleep(0.02)
    hold(host, child, False)
    while time.monotonic() < deadline:
        pid = host.child_pid(child)
        if pid and pid != old and daemons.alive(pid, MARKERS[child]):
            return old, pid
        time.sleep(0.05)
    raise LabError(f"calico-node on {host.name} did not restart {child} within {wait:.0f}s")


def wait_felix_ready(host: Host, timeout: float) -> None:
    daemons.wait_felix_ready(host.netns, HEALTH_PORT, timeout)


def node_health(host: Host, probe: str, timeout: float = 5.0) -> bool:
    """`calico-node -<probe>` (felix-live, felix-ready, bird-live, bird-ready) inside the host namespace."""
    node = str(Path(sys.executable).parent / "calico-node")
    env = {**os.environ, "CALICO_RUN_DIR": host.run_dir, "FELIX_HEALTHPORT": str(HEALTH_PORT)}
    res = subprocess.run(exec_argv(host.netns, [node, f"-{probe}"]), env=env, capture_output=True, text=True,
                         timeout=timeout + 5, check=False)
    return res.returncode == 0

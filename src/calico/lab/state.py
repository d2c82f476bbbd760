"""Where a lab remembers itself: one JSON file per lab under the lab's directory, read and written under a lock.

`$CALICO_LAB_DIR/<name>/` (default `/run/calico-lab/<name>/`) holds `state.json`, the embedded datastore,
etcd's data dir and every daemon's log, so separate `calico-lab` commands find the same lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from calico.lab.netns import LabError

DEFAULT_ROOT = "/run/calico-lab"


@dataclass
class Host:
    name: str
    netns: str
    addr4: str  # fabric address with its subnet length
    addr6: str
    index: int
    subnet: int = 1
    node_pid: int = 0  # the host's calico-node (its supervisor); felix and BIRD are its children
    run_dir: str = ""  # CALICO_RUN_DIR: bird.ctl, the children's pid files, hold files
    route_reflector: bool = False

    def child_pid(self, child: str) -> int:
        """The pid calico-node recorded for its child ("felix", "bird", "confd"); 0 when unknown."""
        try:
            return int((Path(self.run_dir) / f"{child}.pid").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    @property
    def felix_pid(self) -> int:
        return self.child_pid("felix")

    @property
    def bird_socket(self) -> str:
        return str(Path(self.run_dir) / "bird.ctl")


@dataclass
class EtcdMember:
    index: int
    client_port: int
    pid: int = 0
    gateway_port: int = 0  # its loopback gateway port in the root namespace


@dataclass
class Workload:
    name: str
    host: str
    netns: str
    iface: str
    ipv4: str
    ipv6: str
    namespace: str
    endpoint_name: str
    labels: dict[str, str] = field(default_factory=dict)
    port_id: str = ""  # a VM's Neutron port (`calico-lab vm`); empty for a workload


@dataclass
class LabState:
    name: str
    run_id: str
    dataplane: str
    datastore: str
    fabric_ns: str  # the router namespace (it routes between subnets and to the outside)
    outside_ns: str = ""
    subnets: int = 1
    encap: str = "none"  # none | vxlan | vxlan-crosssubnet
    route_reflectors: int = 0
    embedded_path: str = ""
    etcd_members: list[EtcdMember] = field(default_factory=list)
    etcd_endpoint: str = ""  # inside the lab: every member's client URL, comma-separated
    gateway_pid: int = 0
    refresh_interval: float = 10.0  # felix's firewall/IP set read-back period, seconds
    hosts: dict[str, Host] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    openstack: dict[str, Any] = field(default_factory=dict)  # `calico.lab.openstack.OpenStack` once it is up

    @property
    def gateway_ports(self) -> list[int]:
        return [m.gateway_port for m in self.etcd_members]

    @property
    def prefix(self) -> str:
        return f"cl-{self.run_id}-"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        data = json.loads(text)
        data["hosts"] = {k: Host(**v) for k, v in data.get("hosts", {}).items()}
        data["etcd_members"] = [EtcdMember(**m) for m in data.get("etcd_members", [])]
        data["workloads"] = {k: Workload(**v) for k, v in data.get("workloads", {}).items()}
        return cls(**data)


def lab_dir(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise LabError(f"invalid lab name {name!r}")
    return Path(os.environ.get("CALICO_LAB_DIR", DEFAULT_ROOT)) / name


@contextlib.contextmanager
def locked(name: str) -> Iterator[Path]:
    """Serialise commands on one lab (two `workload add` at once must not lose each other's writes)."""
    d = lab_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield d


def load(d: Path) -> LabState:
    path = d / "state.json"
    if not path.exists():
        raise LabError(f"no lab at {d} (run `calico-lab up --name {d.name}` first)")
    return LabState.from_json(path.read_text())


def save(d: Path, state: LabState) -> None:
    tmp = d / "state.json.tmp"
    tmp.write_text(state.to_json())
    tmp.replace(d / "state.json")

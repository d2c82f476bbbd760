"""The lab's address plan. Pure: names and addresses only, no I/O.

Subnet `s` (1-based) is `198.19.<s>.0/24` and `fd00:ff:<s>::/64`, the router holding `.254` / `::fe` on a bridge
`br<s>`. Host `hN` sits in subnet `(N-1) % subnets + 1` with address `.N` / `::N`. Fabric MACs follow the same
plan (`fabric_mac`). The outside network (`198.19.100.0/24`, `fd00:ff:64::/64`) is never inside a pool: reaching
it from a workload needs natOutgoing.
Workload pools: `198.18.0.0/16` and `fd00:1::/48`.
"""

from __future__ import annotations

from dataclasses import dataclass

POOL4, POOL6 = "198.18.0.0/16", "fd00:1::/48"
OUTSIDE_SUBNET = 100
OUTSIDE4, OUTSIDE6 = "198.19.100.1", "fd00:ff:64::1"  # subnet 100 (0x64)
RR_CLUSTER_ID = "244.0.0.1"
ETCD_CLIENT_PORTS = (2379, 12379, 22379)
ETCD_PEER_PORTS = (2380, 12380, 22380)
ENCAPS = {"none": "Never", "vxlan": "Always", "vxlan-crosssubnet": "CrossSubnet"}
BASE_MTU = 1500
VXLAN_OVERHEAD = {4: 50, 6: 70}


def router4(subnet: int) -> str:
    return f"198.19.{subnet}.254"


def router6(subnet: int) -> str:
    return f"fd00:ff:{subnet:x}::fe"


def bridge(subnet: int) -> str:
    return f"br{subnet}"


def fabric_mac(subnet: int, index: int) -> str:
    """A fabric interface's MAC, known before it exists (index 0: the router's bridge), so neighbours can be
    written ahead (see `topology`)."""
    return f"02:ca:{subnet:02x}:00:{index >> 8:02x}:{index & 0xFF:02x}"


@dataclass(frozen=True)
class HostPlan:
    name: str
    index: int
    subnet: int

    @property
    def addr4(self) -> str:
        return f"198.19.{self.subnet}.{self.index}/24"

    @property
    def addr6(self) -> str:
        return f"fd00:ff:{self.subnet:x}::{self.index:x}/64"

    @property
    def mac(self) -> str:
        return fabric_mac(self.subnet, self.index)


def host_plan(index: int, subnets: int) -> HostPlan:
    return HostPlan(f"h{index}", index, (index - 1) % subnets + 1)


def etcd_host() -> str:
    """etcd members listen on the router's address in subnet 1, one port each."""
    return router4(1)


def workload_mtu(encap: str) -> int:
    """The workload interfaces' MTU: the fabric's, less the encapsulation's overhead (IPv6's, the larger, when
    VXLAN is on, since one interface carries both families)."""
    return BASE_MTU - (VXLAN_OVERHEAD[6] if encap != "none" else 0)

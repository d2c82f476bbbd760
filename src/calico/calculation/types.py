"""Keys and values the stages of the calculation graph hand each other (a leaf: imports no stage).

Enters: nothing; every stage imports what it sends or receives from here (and the dataplane contract from
`events`). Leaves: item and endpoint keys, the local endpoint values the endpoint filter passes to the policy
resolver, the rule bundles that flow graph -> active rules -> rule scanner, the IP set descriptions that
flow rule scanner -> IP set members, and the node addresses that flow node tracker -> route resolver.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface

from calico.calculation.events import (
    HostEndpointRemove,
    HostEndpointUpdate,
    IPSetType,
    NATInfo,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.resources import Rule
from calico.resources.fields import PORT_PROTOCOLS, PROTOCOL_NAMES
from calico.selector import Selector

__all__ = [
    "EndpointEvent",
    "EndpointKey",
    "HostEndpointKey",
    "IPSetSpec",
    "ItemData",
    "ItemKey",
    "LocalHost",
    "LocalInfo",
    "LocalWorkload",
    "NamedPort",
    "NetworkSetKey",
    "NodeInfo",
    "ParentKey",
    "PolicyRules",
    "ProfileRules",
    "port_protocol",
]

# ---- keys ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostEndpointKey:
    name: str


@dataclass(frozen=True, slots=True)
class NetworkSetKey:
    namespace: str | None  # None: GlobalNetworkSet
    name: str


EndpointKey = WorkloadEndpointID | HostEndpointKey
ItemKey = WorkloadEndpointID | HostEndpointKey | NetworkSetKey
ParentKey = str  # a profile name, or `endpoints.namespace_parent(ns)` (":" cannot occur in profile names)

EndpointEvent = WorkloadEndpointUpdate | WorkloadEndpointRemove | HostEndpointUpdate | HostEndpointRemove

# ---- local endpoints (endpoint filter -> policy resolver) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class LocalWorkload:
    iface: str
    mac: str | None
    ipv4_nets: tuple[str, ...]
    ipv6_nets: tuple[str, ...]
    profile_ids: tuple[str, ...]
    allow_spoofed_source_prefixes: tuple[str, ...]
    ipv4_nats: tuple[NATInfo, ...] = ()
    ipv6_nats: tuple[NATInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class LocalHost:
    iface: str | None
    expected_ips: tuple[str, ...]
    profile_ids: tuple[str, ...]
    quarantined: bool = False  # last value was bad: no policy, no profile, so the dataplane drops all


LocalInfo = LocalWorkload | LocalHost

# ---- rules (graph -> active rules -> rule scanner) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyRules:
    """The rendering-relevant part of a policy."""

    namespace: str | None
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    inbound: bool  # types include Ingress
    outbound: bool  # types include Egress
    untracked: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False
    broken: bool = False


@dataclass(frozen=True, slots=True)
class ProfileRules:
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    broken: bool = False


# ---- nodes (node tracker -> route resolver) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What other hosts need of a Node: its underlay addresses (with their subnets, from spec.bgp), its
    VXLAN tunnel addresses and MACs and its IP-in-IP tunnel address (None where the Node sets none)."""

    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    vxlan_ipv4: str | None = None
    vxlan_mac: str | None = None
    vxlan_ipv6: str | None = None
    vxlan_mac_v6: str | None = None
    ipip_ipv4: str | None = None

    def underlay(self, version: int) -> IPv4Interface | IPv6Interface | None:
        return self.ipv4 if version == 4 else self.ipv6

    def tunnel_address(self, version: int) -> str | None:
        """The tunnel address of a family, when that family's tunnel is usable (it needs an underlay too)."""
        if self.underlay(version) is None:
            return None
        return self.vxlan_ipv4 if version == 4 else self.vxlan_ipv6


# ---- IP sets (rule scanner -> IP set members; endpoints -> IP set members) ----------------------------

NamedPort = tuple[str, str, int]  # (port name, `port_protocol` spelling "tcp"/"udp"/"sctp", port number)


@dataclass(frozen=True, slots=True)
class IPSetSpec:
    """What one IP set holds. Exactly one of `selector` (with optional `named_port`) and `nets` is used."""

    set_id: str
    set_type: IPSetType
    selector: Selector | None = None
    named_port: tuple[str, str] | None = None  # (protocol, port name): members are "ip,proto:port"
    nets: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ItemData:
    """The parts of an item that become members."""

    cidrs: tuple[str, ...]
    ports: tuple[NamedPort, ...] = ()


# Calico's spelling of a port protocol (or its number) -> its lower-case name. Built from the resources'
# protocol table; the numbers come from the OS's IPPROTO constants, so there is no second table here.
_PORT_PROTOCOL_NAMES: dict[str | int, str] = {}
for _lower, _canon in PROTOCOL_NAMES.items():
    if _canon in PORT_PROTOCOLS:
        _PORT_PROTOCOL_NAMES[_canon] = _lower
        _PORT_PROTOCOL_NAMES[int(getattr(socket, f"IPPROTO_{_canon.upper()}"))] = _lower
del _lower, _canon


def port_protocol(protocol: str | int) -> str:
    """How named-port members and sets spell a port protocol ("tcp", "udp", "sctp"; else the number)."""
    return _PORT_PROTOCOL_NAMES.get(protocol, str(protocol).lower())

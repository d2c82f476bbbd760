"""What the calculation graph tells the dataplane: this host's desired state, as ordered deltas.

The graph emits these in a safe order (see `calico.calculation`): an IP set exists before any rule that
names it and is removed after the last such rule; a policy or profile exists before any endpoint that
lists it and is removed after. Every value here is plain, immutable data: no selectors, no resources.
The dataplane turns them into kernel state; it never looks at resources itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class IPSetType(enum.Enum):
    NET = "net"  # members are CIDRs, "198.18.0.1/32", "fd00::/64"; v4 and v6 mixed, the dataplane splits
    IP_PORT = "ip-port"  # named ports: members are "198.18.0.1,tcp:8080" / "fd00::1,udp:53"


@dataclass(frozen=True, slots=True)
class IPSetUpdate:
    """Create the set, or replace its whole membership."""

    set_id: str
    set_type: IPSetType
    members: frozenset[str]


@dataclass(frozen=True, slots=True)
class IPSetDelta:
    set_id: str
    added: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True, slots=True)
class IPSetRemove:
    set_id: str


# --- rules ------------------------------------------------------------------------------------------

PortRange = tuple[int, int]  # inclusive; a single port is (p, p)


@dataclass(frozen=True, slots=True)
class RenderedRule:
    """One Calico rule with every selector already resolved to IP set ids.

    Match semantics (all present fields must hold): `*_ip_set_ids` all contain the address;
    `not_*_ip_set_ids` none contain it; `*_named_port_set_ids` at least one contains (addr, proto, port),
    OR'ed with `*_ports` (Calico ORs numeric and named ports of one rule). `action` is Allow, Deny, Pass, Log.
    """

    action: str
    rule_id: str  # short stable hash of the rule's content and position, for comments / counters
    ip_version: int | None = None
    protocol: str | int | None = None  # Calico's spelling ("TCP", "ICMPv6") or a number
    not_protocol: str | int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    src_nets: tuple[str, ...] = ()
    not_src_nets: tuple[str, ...] = ()
    dst_nets: tuple[str, ...] = ()
    not_dst_nets: tuple[str, ...] = ()
    src_ip_set_ids: tuple[str, ...] = ()
    not_src_ip_set_ids: tuple[str, ...] = ()
    dst_ip_set_ids: tuple[str, ...] = ()
    not_dst_ip_set_ids: tuple[str, ...] = ()
    src_ports: tuple[PortRange, ...] = ()
    not_src_ports: tuple[PortRange, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    src_named_port_set_ids: tuple[str, ...] = ()
    not_src_named_port_set_ids: tuple[str, ...] = ()
    dst_named_port_set_ids: tuple[str, ...] = ()
    not_dst_named_port_set_ids: tuple[str, ...] = ()


# --- policies and profiles ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class PolicyID:
    tier: str
    name: str
    namespace: str | None = None  # None for GlobalNetworkPolicy


@dataclass(frozen=True, slots=True)
class PolicyUpdate:
    policy_id: PolicyID
    inbound: tuple[RenderedRule, ...]
    outbound: tuple[RenderedRule, ...]
    untracked: bool = False  # doNotTrack
    pre_dnat: bool = False
    apply_on_forward: bool = False


@dataclass(frozen=True, slots=True)
class PolicyRemove:
    policy_id: PolicyID


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    profile_id: str
    inbound: tuple[RenderedRule, ...]
    outbound: tuple[RenderedRule, ...]


@dataclass(frozen=True, slots=True)
class ProfileRemove:
    profile_id: str


# --- endpoints --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TierInfo:
    """One tier's policies that apply to an endpoint, in evaluation order, per direction."""

    name: str
    default_action: str  # "Deny" or "Pass": what happens when policies applied but none matched
    ingress_policies: tuple[PolicyID, ...] = ()
    egress_policies: tuple[PolicyID, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class WorkloadEndpointID:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class WorkloadEndpointUpdate:
    endpoint_id: WorkloadEndpointID
    iface: str
    mac: str | None
    ipv4_nets: tuple[str, ...]
    ipv6_nets: tuple[str, ...]
    tiers: tuple[TierInfo, ...]
    profile_ids: tuple[str, ...]
    allow_spoofed_source_prefixes: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = field(default=())  # effective labels, for status/debugging


@dataclass(frozen=True, slots=True)
class WorkloadEndpointRemove:
    endpoint_id: WorkloadEndpointID


@dataclass(frozen=True, slots=True)
class HostEndpointUpdate:
    name: str
    iface: str | None  # None or "*": matched by expected_ips (or all interfaces for "*")
    expected_ips: tuple[str, ...]
    tiers: tuple[TierInfo, ...]  # normal policy
    untracked_tiers: tuple[TierInfo, ...]
    pre_dnat_tiers: tuple[TierInfo, ...]
    forward_tiers: tuple[TierInfo, ...]
    profile_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HostEndpointRemove:
    name: str


# --- agent-level --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """The merged FelixConfiguration for this host (global `default`, then `node.<name>`), Calico's names."""

    settings: tuple[tuple[str, object], ...]


@dataclass(frozen=True, slots=True)
class InSync:
    """Everything the datastore held at start has been emitted; the dataplane may now remove leftovers."""


DataplaneEvent = (
    IPSetUpdate
    | IPSetDelta
    | IPSetRemove
    | PolicyUpdate
    | PolicyRemove
    | ProfileUpdate
    | ProfileRemove
    | WorkloadEndpointUpdate
    | WorkloadEndpointRemove
    | HostEndpointUpdate
    | HostEndpointRemove
    | ConfigUpdate
    | InSync
)

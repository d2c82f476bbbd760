"""What the calculation graph tells the dataplane: this host's desired state, as ordered deltas.

The graph emits these in a safe order (see `calico.calculation`): an IP set exists before any rule that
names it and is removed after the last such rule; a policy or profile exists before any endpoint that
lists it and is removed after; a VTEP exists before any route through it and is removed after; a pool is
removed after the routes inside it. Every value here is plain, immutable data: no selectors, no resources.
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


@dataclass(frozen=True, slots=True, order=True)
class NATInfo:
    """One 1:1 NAT of a workload (`spec.ipNATs`; OpenStack's floating IP): traffic to `external_ip` is
    destination-NATed to `internal_ip`, one of the endpoint's own addresses, and traffic from `internal_ip` to
    outside every IP pool leaves with `external_ip`. Both are canonical addresses of one family, no prefix."""

    external_ip: str
    internal_ip: str


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
    ipv4_nats: tuple[NATInfo, ...] = ()  # in the endpoint's order; the dataplane routes each external_ip
    ipv6_nats: tuple[NATInfo, ...] = ()  # to `iface` like the endpoint's own addresses


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


# --- the network of hosts: pools, tunnel endpoints, routes to other hosts -----------------------------
# IPv4 and IPv6 are handled alike and independently: a pool, a block and a route are of one family; a VTEP
# carries up to one tunnel of each family (`vxlan.calico` over the IPv4 underlay, `vxlan-v6.calico` over the
# IPv6 one). A route's family is its `dst`'s, and so is the device and the gateway it uses.


@dataclass(frozen=True, slots=True)
class IPPoolUpdate:
    """An IP pool exists (or changed). The dataplane uses it for natOutgoing: traffic from an address in a
    pool with `nat_outgoing` to a destination outside every pool leaves with the host's address (traffic to
    any pool's addresses is never masqueraded). The modes are Calico's ("Never", "Always", "CrossSubnet");
    routes through tunnels come as `RouteUpdate`s, so the modes are informational for the dataplane.
    A disabled pool still routes and masquerades the addresses already handed out of it."""

    cidr: str
    nat_outgoing: bool
    vxlan_mode: str
    ipip_mode: str
    disabled: bool
    block_size: int


@dataclass(frozen=True, slots=True)
class IPPoolRemove:
    """No pool has this CIDR any more (sent after the routes inside it are removed)."""

    cidr: str


@dataclass(frozen=True, slots=True)
class VTEPUpdate:
    """A node's VXLAN tunnel endpoint: for each family, the node's underlay address (`parent_ip`, from its
    Node's spec.bgp.ipv4Address / `parent_ip_v6` from ipv6Address, without the prefix length), its tunnel
    device's address and MAC. A family is all set or all None: it is present only when the Node has both a
    tunnel address and an underlay address of that family. The MAC is the Node's vxlanTunnelMACAddr(V6)
    when set, else the one Calico derives from the node name (`vteps.vtep_mac`), which the node's own Felix
    gives its device.

    Sent for every node that has a tunnel, this host included: `node == hostname` describes this host's own
    `vxlan.calico` / `vxlan-v6.calico` device (its address and MAC) and its `tunl0` address (`ipip_addr`, the
    Node's spec.bgp.ipv4IPIPTunnelAddr: a node with only that has no VXLAN family); every other node becomes a
    static FDB entry (MAC -> parent_ip) and a neighbour entry (tunnel address -> MAC) on that device (IP-in-IP
    needs nothing per node). It precedes the routes that use it; a changed VTEP is sent again as a whole
    (replace, not merge)."""

    node: str
    parent_ip: str | None
    ipv4_addr: str | None
    mac: str | None
    parent_ip_v6: str | None = None
    ipv6_addr: str | None = None
    mac_v6: str | None = None
    ipip_addr: str | None = None  # Node.spec.bgp.ipv4IPIPTunnelAddr: this host's tunl0 address (others: unused)


@dataclass(frozen=True, slots=True)
class VTEPRemove:
    """The node has no usable tunnel any more (sent after every route through it is removed or changed)."""

    node: str


class RouteKind(enum.Enum):
    VXLAN = "vxlan"  # through vxlan.calico (vxlan-v6.calico for IPv6), onlink via `gateway`: the node's VTEP
    DIRECT = "direct"  # CrossSubnet pool, node in this host's subnet: a plain route via its underlay address
    IPIP = "ipip"  # IP-in-IP pool: through tunl0, onlink via `gateway`: the node's underlay IPv4 address
    LOCAL_BLOCK = "local_block"  # a block this host holds: the dataplane may blackhole it (BIRD announces it)


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    """A route Felix owns towards another host's workloads, or one of this host's blocks.

    `dst` is a block CIDR (a node's confirmed affinity) or a single workload address (/32, /128) borrowed
    from outside its node's blocks; only destinations inside pools with vxlanMode (or, IPv4, ipipMode) Always
    or CrossSubnet get VXLAN/IPIP/direct routes (other pools are BIRD's business). `node` is where `dst` lives,
    `gateway` the next hop (the node's tunnel address for VXLAN, its underlay address for IPIP and DIRECT,
    None for LOCAL_BLOCK).
    A route is sent only once its gateway is known (for VXLAN: after the node's `VTEPUpdate`)."""

    dst: str
    node: str
    gateway: str | None
    kind: RouteKind


@dataclass(frozen=True, slots=True)
class RouteRemove:
    dst: str


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
    | IPPoolUpdate
    | IPPoolRemove
    | VTEPUpdate
    | VTEPRemove
    | RouteUpdate
    | RouteRemove
    | ConfigUpdate
    | InSync
)

"""Desired dataplane state, folded from the calculation graph's events.

In: `calico.calculation.events` (IP set, policy, profile, endpoint updates, and IP pools, VTEPs and routes,
in the graph's safe order) and the `DataplaneConfig` the driver was built with. Out: plain dictionaries of the
current desired state and its `config` (with an index of the endpoints that have 1:1 NATs, `ip_nats`), plus a
`Dirty` record of which keys changed since the last `take_dirty()`, so a backend can apply work proportional
to the change.

`ConfigUpdate` events are ignored: the configuration is fixed for the driver's life (see `config.py`).
`configure()` replaces it (tests do); that marks everything for a full rewrite (`Dirty.config`).

Pure: no I/O. One instance per host agent (or per test).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig


@dataclass(slots=True)
class IPSet:
    set_type: ev.IPSetType
    members: set[str]


@dataclass(slots=True)
class Dirty:
    """Keys whose desired value changed. A dirty key that is no longer in the state means "removed"."""

    ipsets: set[str] = field(default_factory=set)
    # For dirty IP sets changed only by deltas since the last take: (members added, members removed), net.
    # A dirty set missing here was replaced or removed: a backend must re-render it whole.
    ipset_deltas: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)
    policies: set[ev.PolicyID] = field(default_factory=set)
    profiles: set[str] = field(default_factory=set)
    endpoints: set[ev.WorkloadEndpointID] = field(default_factory=set)
    host_endpoints: set[str] = field(default_factory=set)
    config: bool = False  # the configuration changed: rewrite everything
    # The network of hosts (IP pools by CIDR, VTEPs by node, routes by destination).
    pools: set[str] = field(default_factory=set)
    vteps: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=set)
    nats: bool = False  # some local endpoint's 1:1 NATs changed (the NAT tables are re-derived whole: they are few)

    def __bool__(self) -> bool:
        return bool(
            self.nats
            or self.ipsets
            or self.policies
            or self.profiles
            or self.endpoints
            or self.host_endpoints
            or self.config
            or self.pools
            or self.vteps
            or self.routes
        )


class DesiredState:
    """Current desired state of this host's dataplane, and what changed since the last apply."""

    def __init__(self, config: DataplaneConfig | None = None) -> None:
        self.config = config if config is not None else DataplaneConfig()
        self.ipsets: dict[str, IPSet] = {}
        self.policies: dict[ev.PolicyID, ev.PolicyUpdate] = {}
        self.profiles: dict[str, ev.ProfileUpdate] = {}
        self.endpoints: dict[ev.WorkloadEndpointID, ev.WorkloadEndpointUpdate] = {}
        self.host_endpoints: dict[str, ev.HostEndpointUpdate] = {}
        self.pools: dict[str, ev.IPPoolUpdate] = {}
        self.vteps: dict[str, ev.VTEPUpdate] = {}
        self.routes: dict[str, ev.RouteUpdate] = {}
        # The local endpoints that have 1:1 NATs (floating IPs), and theirs: `ipnat.nat_tables` reads only these.
        self.ip_nats: dict[ev.WorkloadEndpointID, tuple[ev.NATInfo, ...]] = {}
        # The host's own interfaces and their addresses (not from the graph: read from the kernel), by which
        # host endpoints without an interface name find theirs.
        self.host_addresses: dict[str, frozenset[str]] = {}
        self.in_sync = False
        self.dirty = Dirty()
        # Reverse index: which endpoints reference a policy/profile. When a policy appears late or goes early (out
        # of the graph's promised order) the endpoints that name it are re-rendered: their fail-closed drop goes
        # or comes, and no rule is left jumping to a chain being deleted.
        self._policy_users: dict[ev.PolicyID, set[ev.WorkloadEndpointID]] = {}
        self._profile_users: dict[str, set[ev.WorkloadEndpointID]] = {}

    # --- folding events ---------------------------------------------------------------------------------

    def apply_all(self, events: Iterable[ev.DataplaneEvent]) -> None:
        for event in events:
            self.apply(event)

    def apply(self, event: ev.DataplaneEvent) -> None:
        d = self.dirty
        match event:
            case ev.IPSetUpdate(set_id=sid, set_type=st, members=members):
                self.ipsets[sid] = IPSet(st, set(members))
                d.ipsets.add(sid)
                d.ipset_deltas.pop(sid, None)
            case ev.IPSetDelta(set_id=sid, added=added, removed=removed):
                ipset = self.ipsets.get(sid)
                if ipset is None:  # delta for an unknown set: treat as a NET set being created
                    ipset = self.ipsets[sid] = IPSet(ev.IPSetType.NET, set())
                    d.ipset_deltas.pop(sid, None)
                elif sid not in d.ipsets:
                    d.ipset_deltas[sid] = (set(), set())
                ipset.members -= removed
                ipset.members |= added
                d.ipsets.add(sid)
                if (acc := d.ipset_deltas.get(sid)) is not None:
                    acc_added, acc_removed = acc
                    acc_added -= removed
                    acc_removed -= added
                    acc_added |= added
                    acc_removed |= removed
            case ev.IPSetRemove(set_id=sid):
                if self.ipsets.pop(sid, None) is not None:
                    d.ipsets.add(sid)
                    d.ipset_deltas.pop(sid, None)
            case ev.PolicyUpdate(policy_id=pid):
                if pid not in self.policies:
                    d.endpoints |= self._policy_users.get(pid, set())
                self.policies[pid] = event
                d.policies.add(pid)
            case ev.PolicyRemove(policy_id=pid):
                if self.policies.pop(pid, None) is not None:
                    d.policies.add(pid)
                    d.endpoints |= self._policy_users.get(pid, set())  # still named (out of order): fail closed
            case ev.ProfileUpdate(profile_id=pid):
                if pid not in self.profiles:
                    d.endpoints |= self._profile_users.get(pid, set())
                self.profiles[pid] = event
                d.profiles.add(pid)
            case ev.ProfileRemove(profile_id=pid):
                if self.profiles.pop(pid, None) is not None:
                    d.profiles.add(pid)
                    d.endpoints |= self._profile_users.get(pid, set())
            case ev.WorkloadEndpointUpdate(endpoint_id=eid):
                self._unindex(eid)
                self.endpoints[eid] = event
                self._index(event)
                d.endpoints.add(eid)
                self._set_nats(eid, event.ipv4_nats + event.ipv6_nats)
            case ev.WorkloadEndpointRemove(endpoint_id=eid):
                self._unindex(eid)
                if self.endpoints.pop(eid, None) is not None:
                    d.endpoints.add(eid)
                self._set_nats(eid, ())
            case ev.HostEndpointUpdate(name=name):
                self.host_endpoints[name] = event
                d.host_endpoints.add(name)
            case ev.HostEndpointRemove(name=name):
                if self.host_endpoints.pop(name, None) is not None:
                    d.host_endpoints.add(name)
            case ev.IPPoolUpdate(cidr=cidr):
                self.pools[cidr] = event
                d.pools.add(cidr)
            case ev.IPPoolRemove(cidr=cidr):
                if self.pools.pop(cidr, None) is not None:
                    d.pools.add(cidr)
            case ev.VTEPUpdate(node=node):
                self.vteps[node] = event
                d.vteps.add(node)
            case ev.VTEPRemove(node=node):
                if self.vteps.pop(node, None) is not None:
                    d.vteps.add(node)
            case ev.RouteUpdate(dst=dst):
                self.routes[dst] = event
                d.routes.add(dst)
            case ev.RouteRemove(dst=dst):
                if self.routes.pop(dst, None) is not None:
                    d.routes.add(dst)
            case ev.ConfigUpdate():
                pass  # the configuration is fixed for the driver's life (config.py)
            case ev.InSync():
                self.in_sync = True
            case _:
                raise TypeError(f"unknown dataplane event {event!r}")

    def configure(self, config: DataplaneConfig) -> None:
        """A new configuration; when it differs, the next apply rewrites everything."""
        if config != self.config:
            self.config = config
            self.dirty.config = True

    def set_host_addresses(self, addresses: dict[str, frozenset[str]]) -> bool:
        """New interface addresses; True when that changes what some host endpoint covers (it is marked dirty)."""
        if addresses == self.host_addresses:
            return False
        self.host_addresses = dict(addresses)
        by_ip = {n for n, h in self.host_endpoints.items() if not h.iface}
        self.dirty.host_endpoints |= by_ip
        return bool(by_ip)

    def take_dirty(self) -> Dirty:
        """Hand the accumulated changes to the caller (the backend) and start a fresh record."""
        dirty, self.dirty = self.dirty, Dirty()
        return dirty

    # --- helpers ----------------------------------------------------------------------------------------

    def _set_nats(self, eid: ev.WorkloadEndpointID, nats: tuple[ev.NATInfo, ...]) -> None:
        if self.ip_nats.get(eid, ()) == nats:
            return
        if nats:
            self.ip_nats[eid] = nats
        else:
            del self.ip_nats[eid]
        self.dirty.nats = True

    def _index(self, ep: ev.WorkloadEndpointUpdate) -> None:
        for tier in ep.tiers:
            for pid in (*tier.ingress_policies, *tier.egress_policies):
                self._policy_users.setdefault(pid, set()).add(ep.endpoint_id)
        for prof in ep.profile_ids:
            self._profile_users.setdefault(prof, set()).add(ep.endpoint_id)

    def _unindex(self, eid: ev.WorkloadEndpointID) -> None:
        old = self.endpoints.get(eid)
        if old is None:
            return
        for tier in old.tiers:
            for pid in (*tier.ingress_policies, *tier.egress_policies):
                users = self._policy_users.get(pid)
                if users is not None:
                    users.discard(eid)
                    if not users:
                        del self._policy_users[pid]
        for prof in old.profile_ids:
            users = self._profile_users.get(prof)
            if users is not None:
                users.discard(eid)
                if not users:
                    del self._profile_users[prof]

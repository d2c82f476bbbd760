"""Test helpers for the calculation graph: resource builders, a feeding shim, and a model dataplane.

`Dataplane` folds flushed events into state and checks, event by event, what a real dataplane relies on:
sets exist before rules name them and are removed after; policies/profiles exist before endpoints list
them and are removed after; deltas are exact (add only absent members, remove only present ones); a VXLAN
route's VTEP exists when the route arrives and is not removed under it, and after each flush every VXLAN
route's gateway is its node's tunnel address; a pool goes after the routes inside it; each flush follows
the sequencer's group order and names each object at most once.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterable
from typing import Any

from calico.calculation.events import (
    ConfigUpdate,
    DataplaneEvent,
    HostEndpointRemove,
    HostEndpointUpdate,
    InSync,
    IPPoolRemove,
    IPPoolUpdate,
    IPSetDelta,
    IPSetRemove,
    IPSetType,
    IPSetUpdate,
    PolicyID,
    PolicyRemove,
    PolicyUpdate,
    ProfileRemove,
    ProfileUpdate,
    RenderedRule,
    RouteKind,
    RouteRemove,
    RouteUpdate,
    TierInfo,
    VTEPRemove,
    VTEPUpdate,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calculation.graph import CalcGraph
from calico.datastore.keys import affinity_key
from calico.resources import parse_resource

PREFIX = "/calico/resources/v3/projectcalico.org/"
API = "projectcalico.org/v3"
HOST = "n1"

_PLURALS = {
    "WorkloadEndpoint": "workloadendpoints",
    "HostEndpoint": "hostendpoints",
    "Profile": "profiles",
    "Tier": "tiers",
    "NetworkPolicy": "networkpolicies",
    "GlobalNetworkPolicy": "globalnetworkpolicies",
    "NetworkSet": "networksets",
    "GlobalNetworkSet": "globalnetworksets",
    "FelixConfiguration": "felixconfigurations",
    "Node": "nodes",
    "IPPool": "ippools",
}


def key_of(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    plural = _PLURALS[doc["kind"]]
    if meta.get("namespace"):
        return f"{PREFIX}{plural}/{meta['namespace']}/{meta['name']}"
    return f"{PREFIX}{plural}/{meta['name']}"


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def wep(
    name: str,
    ns: str = "ns1",
    node: str = HOST,
    labels: dict[str, str] | None = None,
    ips: Iterable[str] = ("10.0.0.1",),
    profiles: Iterable[str] | None = None,
    ports: Iterable[tuple[str, str, int]] = (),
    iface: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "node": node,
        "interfaceName": iface or ("cali" + name)[:15],
        "ipNetworks": [ip if "/" in ip else (f"{ip}/128" if ":" in ip else f"{ip}/32") for ip in ips],
        **spec,
    }
    if profiles is not None:
        body["profiles"] = list(profiles)
    if ports:
        body["ports"] = [{"name": n, "protocol": p, "port": port} for n, p, port in ports]
    return {"apiVersion": API, "kind": "WorkloadEndpoint", "metadata": _meta(name, ns, labels), "spec": body}


def hep(
    name: str,
    node: str = HOST,
    labels: dict[str, str] | None = None,
    ips: Iterable[str] = ("192.168.0.1",),
    iface: str | None = "eth0",
    profiles: Iterable[str] | None = None,
    ports: Iterable[tuple[str, str, int]] = (),
) -> dict[str, Any]:
    body: dict[str, Any] = {"node": node, "expectedIPs": list(ips)}
    if iface:
        body["interfaceName"] = iface
    if profiles is not None:
        body["profiles"] = list(profiles)
    if ports:
        body["ports"] = [{"name": n, "protocol": p, "port": port} for n, p, port in ports]
    return {"apiVersion": API, "kind": "HostEndpoint", "metadata": _meta(name, None, labels), "spec": body}


def gnp(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": _meta(name, None, labels), "spec": spec}


def np_(name: str, ns: str = "ns1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "NetworkPolicy", "metadata": _meta(name, ns), "spec": spec}


def profile(name: str, labels_to_apply: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    if labels_to_apply is not None:
        spec["labelsToApply"] = labels_to_apply
    return {"apiVersion": API, "kind": "Profile", "metadata": _meta(name), "spec": spec}


def tier(name: str, order: float | None = None, default_action: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if default_action is not None:
        spec["defaultAction"] = default_action
    return {"apiVersion": API, "kind": "Tier", "metadata": _meta(name), "spec": spec}


def netset(name: str, nets: Iterable[str], ns: str | None = None, labels: dict[str, str] | None = None) -> dict:
    kind = "NetworkSet" if ns else "GlobalNetworkSet"
    return {"apiVersion": API, "kind": kind, "metadata": _meta(name, ns, labels), "spec": {"nets": list(nets)}}


def felix_config(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "FelixConfiguration", "metadata": _meta(name), "spec": spec}


def node(
    name: str,
    ipv4: str | None = None,
    ipv6: str | None = None,
    vxlan: str | None = None,
    mac: str | None = None,
    vxlan_v6: str | None = None,
    mac_v6: str | None = None,
    ipip: str | None = None,
) -> dict[str, Any]:
    """A Node; `ipv4`/`ipv6` are its BGP (underlay) addresses with their subnet length."""
    spec: dict[str, Any] = {}
    bgp = {k: v for k, v in (("ipv4Address", ipv4), ("ipv6Address", ipv6), ("ipv4IPIPTunnelAddr", ipip)) if v}
    if bgp:
        spec["bgp"] = bgp
    for field_name, value in (
        ("ipv4VXLANTunnelAddr", vxlan),
        ("vxlanTunnelMACAddr", mac),
        ("ipv6VXLANTunnelAddr", vxlan_v6),
        ("vxlanTunnelMACAddrV6", mac_v6),
    ):
        if value:
            spec[field_name] = value
    return {"apiVersion": API, "kind": "Node", "metadata": _meta(name), "spec": spec}


def pool(name: str, cidr: str, vxlan: str = "Never", nat: bool = False, ipip: str = "Never", **spec: Any
         ) -> dict[str, Any]:
    body = {"cidr": cidr, "vxlanMode": vxlan, "ipipMode": ipip, "natOutgoing": nat, **spec}
    return {"apiVersion": API, "kind": "IPPool", "metadata": _meta(name), "spec": body}


def affinity(node_name: str, block: str, state: str = "confirmed", deleted: bool = False) -> tuple[str, bytes]:
    """An IPAM block affinity as libcalico-go stores it: (key, value)."""
    return affinity_key(node_name, block), json.dumps({"state": state, "deleted": deleted}).encode()


def allow(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


def check_valid(doc: dict[str, Any]) -> dict[str, Any]:
    parse_resource(doc)  # builders must produce values the graph accepts
    return doc


class Feeder:
    """A graph plus the datastore contents fed to it (key -> bytes)."""

    def __init__(self, hostname: str = HOST) -> None:
        self.graph = CalcGraph(hostname)
        self.store: dict[str, bytes] = {}
        self.dp = Dataplane()

    def put(self, *docs: dict[str, Any]) -> Feeder:
        for doc in docs:
            key, value = key_of(doc), encode(doc)
            self.store[key] = value
            self.graph.on_update(key, value)
        return self

    def put_raw(self, key: str, value: bytes) -> Feeder:
        self.store[key] = value
        self.graph.on_update(key, value)
        return self

    def delete_raw(self, key: str) -> Feeder:
        self.store.pop(key, None)
        self.graph.on_update(key, None)
        return self

    def delete(self, *docs: dict[str, Any]) -> Feeder:
        for doc in docs:
            key = key_of(doc)
            self.store.pop(key, None)
            self.graph.on_update(key, None)
        return self

    def flush(self) -> list[DataplaneEvent]:
        events = self.graph.flush()
        self.dp.apply(events)
        return events


def from_scratch(store: dict[str, bytes], rng: random.Random, hostname: str = HOST) -> tuple[CalcGraph, Dataplane]:
    """A fresh graph fed `store` in shuffled order, in sync and flushed once into a model dataplane."""
    graph, dp = CalcGraph(hostname), Dataplane()
    items = list(store.items())
    rng.shuffle(items)
    for key, value in items:
        graph.on_update(key, value)
    graph.on_in_sync()
    dp.apply(graph.flush())
    return graph, dp


# ---- model dataplane -----------------------------------------------------------------------------

_GROUPS: list[tuple[type, ...]] = [
    (ConfigUpdate,),
    (IPPoolUpdate,),
    (RouteRemove,),
    (VTEPUpdate,),
    (RouteUpdate,),
    (VTEPRemove,),
    (IPSetUpdate, IPSetDelta),
    (PolicyUpdate, ProfileUpdate),
    (WorkloadEndpointUpdate, HostEndpointUpdate),
    (WorkloadEndpointRemove, HostEndpointRemove),
    (PolicyRemove, ProfileRemove),
    (IPSetRemove,),
    (IPPoolRemove,),
    (InSync,),
]


def group_of(event: DataplaneEvent) -> int:
    for i, types in enumerate(_GROUPS):
        if isinstance(event, types):
            return i
    raise AssertionError(f"unknown event {event!r}")


def _identity(event: DataplaneEvent) -> object:
    if isinstance(event, IPSetUpdate | IPSetDelta | IPSetRemove):
        return ("set", event.set_id)
    if isinstance(event, PolicyUpdate | PolicyRemove):
        return ("policy", event.policy_id)
    if isinstance(event, ProfileUpdate | ProfileRemove):
        return ("profile", event.profile_id)
    if isinstance(event, WorkloadEndpointUpdate | WorkloadEndpointRemove):
        return ("wep", event.endpoint_id)
    if isinstance(event, HostEndpointUpdate | HostEndpointRemove):
        return ("hep", event.name)
    if isinstance(event, IPPoolUpdate | IPPoolRemove):
        return ("pool", event.cidr)
    if isinstance(event, VTEPUpdate | VTEPRemove):
        return ("vtep", event.node)
    if isinstance(event, RouteUpdate | RouteRemove):
        return ("route", event.dst)
    return (type(event).__name__,)


def rule_set_ids(rule: RenderedRule) -> set[str]:
    return {
        *rule.src_ip_set_ids,
        *rule.not_src_ip_set_ids,
        *rule.dst_ip_set_ids,
        *rule.not_dst_ip_set_ids,
        *rule.src_named_port_set_ids,
        *rule.not_src_named_port_set_ids,
        *rule.dst_named_port_set_ids,
        *rule.not_dst_named_port_set_ids,
    }


def _tier_policies(tiers: Iterable[TierInfo]) -> set[PolicyID]:
    return {p for t in tiers for p in (*t.ingress_policies, *t.egress_policies)}


class Dataplane:
    """See the module docstring."""

    def __init__(self) -> None:
        self.ipsets: dict[str, tuple[IPSetType, set[str]]] = {}
        self.policies: dict[PolicyID, PolicyUpdate] = {}
        self.profiles: dict[str, ProfileUpdate] = {}
        self.weps: dict[WorkloadEndpointID, WorkloadEndpointUpdate] = {}
        self.heps: dict[str, HostEndpointUpdate] = {}
        self.config: ConfigUpdate | None = None
        self.pools: dict[str, IPPoolUpdate] = {}
        self.vteps: dict[str, VTEPUpdate] = {}
        self.routes: dict[str, RouteUpdate] = {}
        self.in_syncs = 0

    def apply(self, events: list[DataplaneEvent]) -> None:
        groups = [group_of(e) for e in events]
        assert groups == sorted(groups), f"events out of order: {[type(e).__name__ for e in events]}"
        ids = [_identity(e) for e in events]
        assert len(ids) == len(set(ids)), "an object appears twice in one flush"
        for event in events:
            self._apply(event)
        for route in self.routes.values():
            if route.kind is RouteKind.VXLAN:
                vtep = self.vteps.get(route.node)
                assert vtep is not None, f"route {route.dst} through {route.node}, which has no VTEP"
                assert route.gateway in (vtep.ipv4_addr, vtep.ipv6_addr), f"route {route.dst}: stale gateway"

    def _check_route(self, route: RouteUpdate) -> None:
        if route.kind is RouteKind.VXLAN:
            vtep = self.vteps.get(route.node)
            assert vtep is not None, f"route {route.dst} arrived before the VTEP of {route.node}"
            family = vtep.ipv6_addr if ":" in route.dst else vtep.ipv4_addr
            assert family == route.gateway, f"route {route.dst} via {route.gateway}, VTEP has {family}"
        if route.kind is not RouteKind.LOCAL_BLOCK:
            assert any(_within(route.dst, p.cidr) and (p.vxlan_mode != "Never" or p.ipip_mode != "Never")
                       for p in self.pools.values()), f"route {route.dst} is in no encapsulated pool"

    def _used_sets(self) -> set[str]:
        used: set[str] = set()
        for owner in (*self.policies.values(), *self.profiles.values()):
            for rule in (*owner.inbound, *owner.outbound):
                used |= rule_set_ids(rule)
        return used

    def _check_rules(self, rules: Iterable[RenderedRule]) -> None:
        for rule in rules:
            missing = rule_set_ids(rule) - self.ipsets.keys()
            assert not missing, f"rule {rule.rule_id} names missing sets {missing}"

    def _referenced_policies(self) -> set[PolicyID]:
        out: set[PolicyID] = set()
        for w in self.weps.values():
            out |= _tier_policies(w.tiers)
        for h in self.heps.values():
            for tiers in (h.tiers, h.untracked_tiers, h.pre_dnat_tiers, h.forward_tiers):
                out |= _tier_policies(tiers)
        return out

    def _referenced_profiles(self) -> set[str]:
        return {p for e in (*self.weps.values(), *self.heps.values()) for p in e.profile_ids}

    def _check_endpoint(self, tiers: Iterable[TierInfo], profile_ids: Iterable[str]) -> None:
        missing = _tier_policies(tiers) - self.policies.keys()
        assert not missing, f"endpoint lists missing policies {missing}"
        missing_profiles = set(profile_ids) - self.profiles.keys()
        assert not missing_profiles, f"endpoint lists missing profiles {missing_profiles}"

    def _apply(self, e: DataplaneEvent) -> None:
        if isinstance(e, IPSetUpdate):
            self.ipsets[e.set_id] = (e.set_type, set(e.members))
        elif isinstance(e, IPSetDelta):
            assert e.set_id in self.ipsets, f"delta for unknown set {e.set_id}"
            members = self.ipsets[e.set_id][1]
            assert e.added or e.removed, "empty delta"
            assert not (e.added & members), "delta adds present members"
            assert e.removed <= members, "delta removes absent members"
            assert not (e.added & e.removed)
            members -= e.removed
            members |= e.added
        elif isinstance(e, IPSetRemove):
            assert e.set_id in self.ipsets, f"remove of unknown set {e.set_id}"
            assert e.set_id not in self._used_sets(), f"set {e.set_id} removed while in use"
            del self.ipsets[e.set_id]
        elif isinstance(e, PolicyUpdate):
            self._check_rules((*e.inbound, *e.outbound))
            self.policies[e.policy_id] = e
        elif isinstance(e, ProfileUpdate):
            self._check_rules((*e.inbound, *e.outbound))
            self.profiles[e.profile_id] = e
        elif isinstance(e, PolicyRemove):
            assert e.policy_id in self.policies
            assert e.policy_id not in self._referenced_policies(), f"{e.policy_id} removed while listed"
            del self.policies[e.policy_id]
        elif isinstance(e, ProfileRemove):
            assert e.profile_id in self.profiles
            assert e.profile_id not in self._referenced_profiles(), f"{e.profile_id} removed while listed"
            del self.profiles[e.profile_id]
        elif isinstance(e, WorkloadEndpointUpdate):
            self._check_endpoint(e.tiers, e.profile_ids)
            self.weps[e.endpoint_id] = e
        elif isinstance(e, HostEndpointUpdate):
            for tiers in (e.tiers, e.untracked_tiers, e.pre_dnat_tiers, e.forward_tiers):
                self._check_endpoint(tiers, e.profile_ids)
            self.heps[e.name] = e
        elif isinstance(e, WorkloadEndpointRemove):
            assert e.endpoint_id in self.weps
            del self.weps[e.endpoint_id]
        elif isinstance(e, HostEndpointRemove):
            assert e.name in self.heps
            del self.heps[e.name]
        elif isinstance(e, IPPoolUpdate):
            self.pools[e.cidr] = e
        elif isinstance(e, IPPoolRemove):
            assert e.cidr in self.pools, f"remove of unknown pool {e.cidr}"
            del self.pools[e.cidr]
            for route in self.routes.values():
                self._check_route(route)  # each is still inside some (other) VXLAN pool
        elif isinstance(e, VTEPUpdate):
            self.vteps[e.node] = e
        elif isinstance(e, VTEPRemove):
            assert e.node in self.vteps, f"remove of unknown VTEP {e.node}"
            using = [r.dst for r in self.routes.values() if r.kind is RouteKind.VXLAN and r.node == e.node]
            assert not using, f"VTEP {e.node} removed under routes {using}"
            del self.vteps[e.node]
        elif isinstance(e, RouteUpdate):
            self._check_route(e)
            self.routes[e.dst] = e
        elif isinstance(e, RouteRemove):
            assert e.dst in self.routes, f"remove of unknown route {e.dst}"
            del self.routes[e.dst]
        elif isinstance(e, ConfigUpdate):
            self.config = e
        elif isinstance(e, InSync):
            self.in_syncs += 1
        else:
            raise AssertionError(f"unknown event {e!r}")

    def state(self) -> dict[str, Any]:
        """Everything but InSync, for comparing two dataplanes."""
        return {
            "ipsets": {k: (t, frozenset(m)) for k, (t, m) in self.ipsets.items()},
            "policies": dict(self.policies),
            "profiles": dict(self.profiles),
            "weps": dict(self.weps),
            "heps": dict(self.heps),
            "config": self.config,
            "pools": dict(self.pools),
            "vteps": dict(self.vteps),
            "routes": dict(self.routes),
        }

    def set_members(self, set_id: str) -> set[str]:
        return set(self.ipsets[set_id][1])

    def policy_rules(self, name: str, tier: str = "default", ns: str | None = None) -> PolicyUpdate:
        return self.policies[PolicyID(tier, name, ns)]


def _within(inner: str, outer: str) -> bool:
    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]

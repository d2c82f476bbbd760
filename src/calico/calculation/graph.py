"""The calculation graph: the syncer's updates in; this host's desired dataplane state, as ordered deltas, out.

Enters: `CalcGraph.on_update(key, value)` for every `calico.datastore.syncer.Update` (value None = deleted),
and `on_in_sync()` when the syncer reports IN_SYNC. Leaves: `flush()` returns the `events` accumulated since
the last flush, in the sequencer's safe order, ending with `InSync()` once after the first in-sync. Callers
batch: feed many updates, then flush once (start of day is one big flush).

What flows where (each [box] is a module of this package; arrows are plain method calls):

    syncer Update(key, value)
        |
        v
    [decoder] ---- BadValue ----> CalcGraph._on_bad: fail closed (see below)
        | Change(kind, resource); AffinityChange(node, block, confirmed)
        v
    CalcGraph: dispatch by kind
        |
        +- WorkloadEndpoint, HostEndpoint, ----> [endpoints] ---- every item of every node ----> [ipset_members]
        |  NetworkSet, GlobalNetworkSet             |   (labels, parents, addresses, named ports)   LabelIndex:
        |                                           |                                               set selectors
        +- Profile labelsToApply (label parents) -->+---------------------------------------------> x all items
        |                                           |                                                 ^      |
        |                                           | local endpoints only                            |      |
        |                                           v (the local endpoint filter)                     |      |
        +- (Global)NetworkPolicy selector -----> [policy_resolver] <---- Tier                         |      |
        |  (namespace-scoped by [selectors])       | LabelIndex: policy selectors x local endpoints   |      |
        |                                          | tiers, policies, profiles per endpoint           |      |
        |                                          |                                                  |      |
        |                                          +-- ref/unref ----------+                          |      |
        |                                          |                       v                          |      |
        +- policy rules, Profile rules ----------------------------> [active_rules]                   |      |
        |                                          |                       | active only              |      |
        |                                          |                       v                          |      |
        |                                          |                 [rule_scanner] -- add/remove ----+      |
        |                                          |                       |           shared sets           |
        |                                          | endpoint updates      | Policy/ProfileUpdate            |
        |                                          v                       v                                 |
        +- FelixConfiguration -> [felix_config] -> [       sequencer       ] <-- IPSetUpdate/Delta/Remove ---+
        |                                                      |
        |                                                      v
        |                                 flush() -> list[DataplaneEvent], in safe order
        |
        +- IPPool -------------> [pools] ---- IPPoolUpdate ----------------------> sequencer
        |                           |
        |                           +----------------+
        +- Node ---------------> [nodes] ---- VTEPUpdate ------------------------> sequencer
        |                           |                |
        |                           | NodeInfo       | pools by CIDR
        |                           v                v
        +- block affinity -----> [          routes          ] ---- RouteUpdate --> sequencer
        |  (/calico/ipam/v2/host/)   blocks, borrowed addresses in VXLAN pools
        +- WorkloadEndpoint: node, addresses --^

Each box knows the boxes it feeds only through a small interface it declares itself (a `typing.Protocol`:
`endpoints.ItemSink` / `LocalEndpointSink`, `policy_resolver.PolicyRefs` / `EndpointSink`,
`active_rules.RuleRenderer` / `RulesSink`, `rule_scanner.SetSink`, `pools.PoolSink`, `nodes.VTEPSink` /
`NodeSink`, `routes.RouteSink`); the keys and values they pass live in the leaf module `types`. No stage
imports another: `CalcGraph.__init__` is the one place the boxes are connected.

`flush()` runs the deferred stages in dependency order: the resolver recomputes touched local endpoints
(and thereby which policies/profiles are active), active rules renders what became active or changed
(acquiring IP sets), the route resolver recomputes the destinations marked since the last flush, IP set
membership reports its deltas, and the sequencer orders everything. Pools and VTEPs reach the sequencer as
they change.

Bad data (a value that fails to decode or validate, logged, never raised):
  - never valid for its key: ignored; we cannot know what it would select, so we neither open nor deny
    anything on its behalf (denying on a guess would let one bad write cut off arbitrary workloads);
  - WorkloadEndpoint we knew: removed everywhere (its interface becomes unknown, which the dataplane drops);
  - HostEndpoint we knew: on this host it stays, with no policy and no profile (drop all but failsafes;
    removing it would leave the interface unpoliced); its IP set membership stays as last agreed;
  - NetworkPolicy / GlobalNetworkPolicy we knew: keeps its last good selector, order and types, and its
    rules become one Deny per direction it applies in;
  - Profile we knew: keeps its last good labels; its rules become Deny in both directions;
  - Tier we knew: keeps its last good order; its defaultAction becomes Deny;
  - NetworkSet / GlobalNetworkSet / FelixConfiguration / Node / IPPool we knew: the last good value stays
    in force;
  - block affinity: a malformed value reads as absent (the block's route goes; BIRD still has it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from calico.calculation.active_rules import ActiveRules
from calico.calculation.decoder import AffinityChange, BadValue, decode_update
from calico.calculation.endpoints import EndpointTracker
from calico.calculation.events import DataplaneEvent, PolicyID, WorkloadEndpointID
from calico.calculation.felix_config import FelixConfigMerger
from calico.calculation.ipset_members import IPSetMembers
from calico.calculation.nodes import NodeTracker
from calico.calculation.policy_resolver import PolicyMeta, PolicyResolver, TierMeta
from calico.calculation.pools import PoolTracker
from calico.calculation.routes import RouteResolver
from calico.calculation.rule_scanner import RuleScanner
from calico.calculation.selectors import policy_selector
from calico.calculation.sequencer import Sequencer
from calico.calculation.types import EndpointKey, HostEndpointKey, NetworkSetKey, PolicyRules, ProfileRules
from calico.datastore.keys import ResourceKey
from calico.resources import (
    FelixConfiguration,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    IPPool,
    NetworkPolicy,
    NetworkSet,
    Node,
    Profile,
    Resource,
    Tier,
    WorkloadEndpoint,
)
from calico.selector import Selector, SelectorError

log = logging.getLogger(__name__)

__all__ = ["CalcGraph"]

Policy = NetworkPolicy | GlobalNetworkPolicy
_PolicyIdent = tuple[str | None, str]  # (namespace or None for global, name)


class CalcGraph:
    """This host's calculation graph; see the module docstring. Pure: no I/O, no threads."""

    def __init__(self, hostname: str, is_local: Callable[[str | None, EndpointKey], bool] | None = None) -> None:
        """`is_local(node, key)`: which endpoints get policy (default: those on `hostname`)."""
        self.hostname = hostname
        # The wiring of the diagram above, built bottom-up: each stage gets the stages it feeds.
        self._sequencer = Sequencer()
        self._ipsets = IPSetMembers()
        self._scanner = RuleScanner(self._ipsets)
        self._active = ActiveRules(self._scanner, self._sequencer)
        self._resolver = PolicyResolver(self._active, self._sequencer)
        self._endpoints = EndpointTracker(hostname, self._ipsets, self._resolver, is_local)
        self._routes = RouteResolver(hostname, self._sequencer)
        self._nodes = NodeTracker(self._sequencer, self._routes)
        self._pools = PoolTracker(self._sequencer, self._routes)
        self._config = FelixConfigMerger(hostname)
        # Last good values, for fail-closed handling of bad ones.
        self._policies: dict[_PolicyIdent, tuple[PolicyID, Policy]] = {}
        self._profiles: dict[str, Profile] = {}
        self._tiers: dict[str, TierMeta] = {}
        self._config_dirty = False
        self._in_sync_seen = False
        self._handlers: dict[str, Callable[[ResourceKey, Resource | None], None]] = {
            HostEndpoint.KIND: self._on_host,
            NetworkSet.KIND: self._on_network_set,
            GlobalNetworkSet.KIND: self._on_network_set,
            Profile.KIND: self._on_profile,
            Tier.KIND: self._on_tier,
            NetworkPolicy.KIND: self._on_policy,
            GlobalNetworkPolicy.KIND: self._on_policy,
            FelixConfiguration.KIND: self._on_felix_config,
            Node.KIND: self._on_node,
            IPPool.KIND: self._on_pool,
        }

    # ---- public API --------------------------------------------------------------------------

    def on_update(self, key: str, value: bytes | None) -> None:
        """One datastore key changed (value None: deleted)."""
        decoded = decode_update(key, value)
        if decoded is None:
            return
        if isinstance(decoded, BadValue):
            self._on_bad(decoded)
            return
        if isinstance(decoded, AffinityChange):
            self._on_affinity(decoded)
            return
        if decoded.kind == WorkloadEndpoint.KIND:
            self._on_workload(decoded.key, decoded.resource, key)
            return
        self._handlers[decoded.kind](decoded.key, decoded.resource)

    def on_in_sync(self) -> None:
        """The datastore snapshot is complete; the next flush ends with InSync (only the first time: later
        resyncs deliver differences, which keep the dataplane's state complete)."""
        if not self._in_sync_seen:
            self._in_sync_seen = True
            self._sequencer.in_sync()
            self._config_dirty = True  # the dataplane always gets its configuration by InSync

    def flush(self) -> list[DataplaneEvent]:
        """The changes since the last flush, in safe order (see `sequencer`)."""
        self._resolver.flush()
        self._active.flush()
        if self._config_dirty:
            self._config_dirty = False
            self._sequencer.config(self._config.merged())
        self._routes.flush()
        changes, removes = self._ipsets.flush()
        return self._sequencer.flush(changes, removes)

    # ---- handlers ----------------------------------------------------------------------------

    def _on_workload(self, key: ResourceKey, res: Resource | None, path: str) -> None:
        """`path` is the datastore key: the route resolver's id for the workload (the agent holds it anyway)."""
        assert key.namespace is not None
        assert res is None or isinstance(res, WorkloadEndpoint)
        self._endpoints.on_workload(WorkloadEndpointID(key.namespace, key.name), res)
        if res is None:
            self._routes.update_workload(path, None, ())
        else:
            self._routes.update_workload(path, res.spec.node, tuple(res.spec.ipNetworks or ()))

    def _on_host(self, key: ResourceKey, res: Resource | None) -> None:
        assert res is None or isinstance(res, HostEndpoint)
        self._endpoints.on_host(key.name, res)

    def _on_network_set(self, key: ResourceKey, res: Resource | None) -> None:
        assert res is None or isinstance(res, NetworkSet | GlobalNetworkSet)
        self._endpoints.on_network_set(NetworkSetKey(key.namespace, key.name), res)

    def _on_profile(self, key: ResourceKey, res: Resource | None) -> None:
        name = key.name
        if res is None:
            self._profiles.pop(name, None)
            self._endpoints.on_profile_labels(name, None)
            self._active.update_profile(name, None)
            return
        assert isinstance(res, Profile)
        self._profiles[name] = res
        self._endpoints.on_profile_labels(name, res.spec.labelsToApply or {})
        self._active.update_profile(name, ProfileRules(tuple(res.spec.ingress or ()), tuple(res.spec.egress or ())))

    def _on_tier(self, key: ResourceKey, res: Resource | None) -> None:
        if res is None:
            self._tiers.pop(key.name, None)
            self._resolver.update_tier(key.name, None)
            return
        assert isinstance(res, Tier)
        meta = TierMeta(res.spec.order, res.spec.defaultAction)
        self._tiers[key.name] = meta
        self._resolver.update_tier(key.name, meta)

    def _on_policy(self, key: ResourceKey, res: Resource | None) -> None:
        ident: _PolicyIdent = (key.namespace, key.name)
        if res is None:
            self._remove_policy(ident)
            return
        assert isinstance(res, NetworkPolicy | GlobalNetworkPolicy)
        try:
            pid, meta, selector, rules = _policy_parts(key, res)
        except SelectorError as exc:
            self._on_bad(BadValue(key, res.KIND, f"selector cannot be scoped: {exc}"))
            return
        old = self._policies.get(ident)
        if old is not None and old[0] != pid:
            self._remove_policy(ident)  # moved tier: a different policy as far as the dataplane knows
        self._policies[ident] = (pid, res)
        self._resolver.update_policy(pid, meta, selector)
        self._active.update_policy(pid, rules)

    def _remove_policy(self, ident: _PolicyIdent) -> None:
        old = self._policies.pop(ident, None)
        if old is not None:
            self._resolver.remove_policy(old[0])
            self._active.update_policy(old[0], None)

    def _on_node(self, key: ResourceKey, res: Resource | None) -> None:
        assert res is None or isinstance(res, Node)
        self._nodes.on_node(key.name, res)

    def _on_pool(self, key: ResourceKey, res: Resource | None) -> None:
        assert res is None or isinstance(res, IPPool)
        self._pools.on_pool(key.name, res)

    def _on_affinity(self, change: AffinityChange) -> None:
        if change.problem is not None:
            log.warning(
                "bad value for block affinity %s of node %s (%s): treated as absent",
                change.block,
                change.node,
                change.problem,
            )
        self._routes.update_affinity(change.node, change.block, change.confirmed)

    def _on_felix_config(self, key: ResourceKey, res: Resource | None) -> None:
        assert res is None or isinstance(res, FelixConfiguration)
        if self._config.update(key.name, res):
            self._config_dirty = True

    # ---- bad data ----------------------------------------------------------------------------

    def _on_bad(self, bad: BadValue) -> None:
        key, kind = bad.key, bad.kind
        where = f"{kind} {key.namespace + '/' if key.namespace else ''}{key.name}"
        if kind == WorkloadEndpoint.KIND:
            assert key.namespace is not None
            wid = WorkloadEndpointID(key.namespace, key.name)
            if self._endpoints.knows(wid):
                log.warning("bad value for %s (%s): removing the endpoint", where, bad.reason)
                self._on_workload(key, None, key.path())
                return
        elif kind == HostEndpoint.KIND:
            if self._endpoints.knows(HostEndpointKey(key.name)):
                if self._endpoints.quarantine_host(key.name):
                    log.warning("bad value for %s (%s): no policy applies to it until fixed", where, bad.reason)
                else:
                    log.warning("bad value for %s (%s): keeping its last good value", where, bad.reason)
                return
        elif kind in (NetworkPolicy.KIND, GlobalNetworkPolicy.KIND):
            last = self._policies.get((key.namespace, key.name))
            if last is not None:
                log.warning("bad value for %s (%s): its rules now deny all", where, bad.reason)
                pid, res = last
                self._active.update_policy(pid, _policy_rules(key.namespace, res, broken=True))
                return
        elif kind == Profile.KIND:
            if key.name in self._profiles:
                log.warning("bad value for %s (%s): its rules now deny all", where, bad.reason)
                self._active.update_profile(key.name, ProfileRules((), (), broken=True))
                return
        elif kind == Tier.KIND:
            last_tier = self._tiers.get(key.name)
            if last_tier is not None:
                log.warning("bad value for %s (%s): its default action is now Deny", where, bad.reason)
                self._resolver.update_tier(key.name, TierMeta(last_tier.order, "Deny"))
                return
        elif kind in (NetworkSet.KIND, GlobalNetworkSet.KIND):
            if self._endpoints.knows(NetworkSetKey(key.namespace, key.name)):
                log.warning("bad value for %s (%s): keeping its last good value", where, bad.reason)
                return
        elif (
            (kind == FelixConfiguration.KIND and self._config.has(key.name))
            or (kind == Node.KIND and self._nodes.knows(key.name))
            or (kind == IPPool.KIND and self._pools.knows(key.name))
        ):
            log.warning("bad value for %s (%s): keeping its last good value", where, bad.reason)
            return
        log.warning("bad value for %s (%s): ignored, no good value known", where, bad.reason)

    # ---- queries (tests, debugging) ----------------------------------------------------------

    @property
    def ipsets(self) -> IPSetMembers:
        return self._ipsets

    @property
    def active_rules(self) -> ActiveRules:
        return self._active

    @property
    def resolver(self) -> PolicyResolver:
        return self._resolver


def _policy_rules(namespace: str | None, res: Policy, broken: bool = False) -> PolicyRules:
    spec = res.spec
    types = spec.types or ["Ingress"]
    is_global = isinstance(res, GlobalNetworkPolicy)
    return PolicyRules(
        namespace=namespace,
        ingress=tuple(spec.ingress or ()),
        egress=tuple(spec.egress or ()),
        inbound="Ingress" in types,
        outbound="Egress" in types,
        untracked=is_global and res.spec.doNotTrack,  # type: ignore[union-attr]
        pre_dnat=is_global and res.spec.preDNAT,  # type: ignore[union-attr]
        apply_on_forward=is_global and res.spec.applyOnForward,  # type: ignore[union-attr]
        broken=broken,
    )


def _policy_parts(key: ResourceKey, res: Policy) -> tuple[PolicyID, PolicyMeta, Selector, PolicyRules]:
    spec = res.spec
    namespace = key.namespace
    rules = _policy_rules(namespace, res)
    meta = PolicyMeta(
        order=spec.order,
        ingress=rules.inbound,
        egress=rules.outbound,
        untracked=rules.untracked,
        pre_dnat=rules.pre_dnat,
        apply_on_forward=rules.apply_on_forward,
    )
    ns_selector = res.spec.namespaceSelector if isinstance(res, GlobalNetworkPolicy) else None
    selector = policy_selector(spec.selector, namespace, ns_selector, spec.serviceAccountSelector)
    return PolicyID(spec.tier, key.name, namespace), meta, selector, rules

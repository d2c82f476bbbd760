"""Policy resolver: which tiers, policies and profiles apply to each local endpoint, in order.

Enters:
  - policies (`update_policy` / `remove_policy`): id, the selector of endpoints it applies to (already
    namespace-scoped, see `selectors.py`), order, types and dataplane flags; every policy in the cluster;
  - tiers (`update_tier`): order and defaultAction;
  - local endpoints only (`update_endpoint` / `remove_endpoint`, from the local endpoint filter) with
    their labels, parents and `LocalInfo`; parent label changes (`update_parent`).
Leaves (`flush`), for each local endpoint touched since the last flush:
  - its `WorkloadEndpointUpdate` / `HostEndpointUpdate` (or remove) to its `EndpointSink` (the sequencer);
  - reference counts of the policies and profiles it uses, to its `PolicyRefs` (active rules: a policy is
    active while at least one local endpoint has it in a tier list; a profile while one lists it).

Ordering: tiers by `order` (lower first, missing last, ties by name); the `default` tier exists without a
Tier resource (order 1000000, defaultAction Deny); a tier with policies but no Tier resource sorts last
with defaultAction Deny. Inside a tier: policy `order` (missing last), then name, then namespace
(GlobalNetworkPolicy first). A tier appears in an endpoint's list when at least one of its policies
applies in either direction; its per-direction tuples hold the policies whose `types` include that
direction. Workload endpoints get normal policies only; doNotTrack and preDNAT policies apply to host
endpoints (as `untracked_tiers` / `pre_dnat_tiers`); a host endpoint's `forward_tiers` are its normal
policies with applyOnForward.

Cost: the policy index holds only local endpoints, so remote endpoint churn never reaches here; a local
endpoint update re-sorts only that endpoint's policies.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from calico.calculation.events import (
    HostEndpointRemove,
    HostEndpointUpdate,
    PolicyID,
    TierInfo,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calculation.types import (
    EndpointEvent,
    EndpointKey,
    HostEndpointKey,
    LocalHost,
    LocalInfo,
    LocalWorkload,
    ParentKey,
)
from calico.selector import Selector
from calico.selector.index import LabelIndex

__all__ = [
    "DEFAULT_TIER",
    "DEFAULT_TIER_META",
    "EndpointSink",
    "PolicyMeta",
    "PolicyRefs",
    "PolicyResolver",
    "TierMeta",
]


class PolicyRefs(Protocol):
    """Who counts which policies and profiles local endpoints use (`active_rules.ActiveRules`)."""

    def ref_policy(self, pid: PolicyID) -> None: ...

    def unref_policy(self, pid: PolicyID) -> None: ...

    def ref_profile(self, name: str) -> None: ...

    def unref_profile(self, name: str) -> None: ...


class EndpointSink(Protocol):
    """Where each touched local endpoint's update or remove goes (`sequencer.Sequencer`)."""

    def endpoint(self, key: EndpointKey, event: EndpointEvent) -> None: ...


DEFAULT_TIER = "default"


@dataclass(frozen=True, slots=True)
class PolicyMeta:
    """What the resolver needs of a policy (its rules go to ActiveRules instead)."""

    order: float | None
    ingress: bool
    egress: bool
    untracked: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False

    @property
    def normal(self) -> bool:
        return not self.untracked and not self.pre_dnat


@dataclass(frozen=True, slots=True)
class TierMeta:
    order: float | None
    default_action: str = "Deny"


DEFAULT_TIER_META = TierMeta(1_000_000.0, "Deny")
_UNKNOWN_TIER_META = TierMeta(None, "Deny")

_Entry = tuple[bool, float, str, str, PolicyID, PolicyMeta]


class PolicyResolver:
    """See the module docstring."""

    def __init__(self, refs: PolicyRefs, sink: EndpointSink) -> None:
        self._refs = refs
        self._sink = sink
        self._index = LabelIndex(self._on_match_start, self._on_match_stop)
        self._policies: dict[PolicyID, PolicyMeta] = {}
        self._tiers: dict[str, TierMeta] = {}
        self._tier_policies: dict[str, set[PolicyID]] = {}
        self._endpoints: dict[EndpointKey, LocalInfo] = {}
        self._matches: dict[EndpointKey, set[PolicyID]] = {}
        self._parent_endpoints: dict[ParentKey, set[EndpointKey]] = {}
        self._endpoint_parents: dict[EndpointKey, tuple[ParentKey, ...]] = {}
        # What the last flush decided, to diff reference counts against.
        self._applied: dict[EndpointKey, frozenset[PolicyID]] = {}
        self._profiles: dict[EndpointKey, frozenset[str]] = {}
        self._dirty: set[EndpointKey] = set()

    # ---- policies and tiers ------------------------------------------------------------------

    def update_policy(self, pid: PolicyID, meta: PolicyMeta, selector: Selector) -> None:
        old = self._policies.get(pid)
        self._policies[pid] = meta
        self._tier_policies.setdefault(pid.tier, set()).add(pid)
        if old is not None and old != meta:
            self._dirty.update(self._index.matching_items(pid))  # type: ignore[arg-type]
        self._index.update_selector(pid, selector)

    def remove_policy(self, pid: PolicyID) -> None:
        if pid not in self._policies:
            return
        self._index.delete_selector(pid)
        del self._policies[pid]
        members = self._tier_policies[pid.tier]
        members.discard(pid)
        if not members:
            del self._tier_policies[pid.tier]

    def update_tier(self, name: str, meta: TierMeta | None) -> None:
        old = self._tiers.get(name)
        if meta is None:
            self._tiers.pop(name, None)
        else:
            self._tiers[name] = meta
        if old != meta:
            for pid in self._tier_policies.get(name, ()):
                self._dirty.update(self._index.matching_items(pid))  # type: ignore[arg-type]

    def tier_meta(self, name: str) -> TierMeta:
        meta = self._tiers.get(name)
        if meta is not None:
            return meta
        return DEFAULT_TIER_META if name == DEFAULT_TIER else _UNKNOWN_TIER_META

    # ---- local endpoints ---------------------------------------------------------------------

    def update_endpoint(
        self, key: EndpointKey, info: LocalInfo, labels: Mapping[str, str], parents: Sequence[ParentKey]
    ) -> None:
        self._endpoints[key] = info
        self._matches.setdefault(key, set())
        old_parents = self._endpoint_parents.get(key, ())
        new_parents = tuple(parents)
        if old_parents != new_parents:
            self._link(key, old_parents, new_parents)
        self._index.update_labels(key, labels, new_parents)
        self._dirty.add(key)  # info or labels (shown in the update) may have changed

    def remove_endpoint(self, key: EndpointKey) -> None:
        if self._endpoints.pop(key, None) is None:
            return
        self._index.delete_labels(key)
        self._matches.pop(key, None)
        self._link(key, self._endpoint_parents.get(key, ()), ())
        self._dirty.add(key)

    def update_parent(self, parent: ParentKey, labels: Mapping[str, str] | None) -> None:
        if labels is None:
            self._index.delete_parent_labels(parent)
        else:
            self._index.update_parent_labels(parent, labels)
        # Effective labels are part of the endpoint update even when no match changes.
        self._dirty.update(self._parent_endpoints.get(parent, ()))

    def _link(self, key: EndpointKey, old: tuple[ParentKey, ...], new: tuple[ParentKey, ...]) -> None:
        for parent in set(old).difference(new):
            found = self._parent_endpoints.get(parent)
            if found is not None:
                found.discard(key)
                if not found:
                    del self._parent_endpoints[parent]
        for parent in set(new).difference(old):
            self._parent_endpoints.setdefault(parent, set()).add(key)
        if new:
            self._endpoint_parents[key] = new
        else:
            self._endpoint_parents.pop(key, None)

    def _on_match_start(self, pid: Hashable, key: Hashable) -> None:
        self._matches[key].add(pid)  # type: ignore[index,arg-type]
        self._dirty.add(key)  # type: ignore[arg-type]

    def _on_match_stop(self, pid: Hashable, key: Hashable) -> None:
        found = self._matches.get(key)  # type: ignore[call-overload]
        if found is not None:
            found.discard(pid)
        self._dirty.add(key)  # type: ignore[arg-type]

    # ---- output ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Recompute touched endpoints; pass their updates on and adjust active policies/profiles."""
        active, sink = self._refs, self._sink
        dirty, self._dirty = self._dirty, set()
        # Workloads matching the same policies get the same tiers; policies and tiers cannot change mid-flush.
        memo: dict[frozenset[PolicyID], tuple[frozenset[PolicyID], tuple[TierInfo, ...]]] = {}
        for key in dirty:
            info = self._endpoints.get(key)
            old_applied = self._applied.pop(key, frozenset())
            old_profiles = self._profiles.pop(key, frozenset())
            event: EndpointEvent
            if info is None:
                applied: frozenset[PolicyID] = frozenset()
                profiles: frozenset[str] = frozenset()
                if isinstance(key, HostEndpointKey):
                    event = HostEndpointRemove(key.name)
                else:
                    event = WorkloadEndpointRemove(key)
            else:
                applied, event = self._resolve(key, info, memo)
                profiles = frozenset(info.profile_ids)
                self._applied[key] = applied
                self._profiles[key] = profiles
            # Reference the new before releasing the old, so a policy kept by this endpoint never flaps.
            for pid in applied - old_applied:
                active.ref_policy(pid)
            for name in profiles - old_profiles:
                active.ref_profile(name)
            for pid in old_applied - applied:
                active.unref_policy(pid)
            for name in old_profiles - profiles:
                active.unref_profile(name)
            sink.endpoint(key, event)

    def _resolve(
        self,
        key: EndpointKey,
        info: LocalInfo,
        memo: dict[frozenset[PolicyID], tuple[frozenset[PolicyID], tuple[TierInfo, ...]]],
    ) -> tuple[frozenset[PolicyID], EndpointEvent]:
        policies = self._policies
        labels = self._index.effective_labels(key) or {}
        label_items = tuple(sorted(labels.items()))
        if isinstance(info, LocalWorkload):
            assert isinstance(key, WorkloadEndpointID)
            matched = frozenset(self._matches.get(key, ()))
            found = memo.get(matched)
            if found is None:
                normal = [e for e in (_entry(pid, policies[pid]) for pid in matched) if e[5].normal]
                found = memo[matched] = (frozenset(e[4] for e in normal), self._tier_infos(normal))
            applied, tiers = found
            update = WorkloadEndpointUpdate(
                endpoint_id=key,
                iface=info.iface,
                mac=info.mac,
                ipv4_nets=info.ipv4_nets,
                ipv6_nets=info.ipv6_nets,
                tiers=tiers,
                profile_ids=info.profile_ids,
                allow_spoofed_source_prefixes=info.allow_spoofed_source_prefixes,
                labels=label_items,
                ipv4_nats=info.ipv4_nats,
                ipv6_nats=info.ipv6_nats,
            )
            return applied, update
        entries = [_entry(pid, policies[pid]) for pid in self._matches.get(key, ())]
        assert isinstance(key, HostEndpointKey) and isinstance(info, LocalHost)
        if info.quarantined:
            entries = []
        normal = [e for e in entries if e[5].normal]
        host_update = HostEndpointUpdate(
            name=key.name,
            iface=info.iface,
            expected_ips=info.expected_ips,
            tiers=self._tier_infos(normal),
            untracked_tiers=self._tier_infos([e for e in entries if e[5].untracked]),
            pre_dnat_tiers=self._tier_infos([e for e in entries if e[5].pre_dnat]),
            forward_tiers=self._tier_infos([e for e in normal if e[5].apply_on_forward]),
            profile_ids=info.profile_ids,
        )
        return frozenset(e[4] for e in entries), host_update

    def _tier_infos(self, entries: Iterable[_Entry]) -> tuple[TierInfo, ...]:
        by_tier: dict[str, list[_Entry]] = {}
        for entry in entries:
            by_tier.setdefault(entry[4].tier, []).append(entry)
        if not by_tier:
            return ()
        out = []
        for tier in sorted(by_tier, key=self._tier_sort_key):
            ordered = sorted(by_tier[tier], key=_entry_sort_key)
            ingress = tuple(e[4] for e in ordered if e[5].ingress)
            egress = tuple(e[4] for e in ordered if e[5].egress)
            if ingress or egress:
                out.append(TierInfo(tier, self.tier_meta(tier).default_action, ingress, egress))
        return tuple(out)

    def _tier_sort_key(self, name: str) -> tuple[bool, float, str]:
        order = self.tier_meta(name).order
        return (order is None, order if order is not None else 0.0, name)

    # ---- queries (tests, debugging) ----------------------------------------------------------

    def matching_policies(self, key: EndpointKey) -> frozenset[PolicyID]:
        return frozenset(self._matches.get(key, ()))

    def endpoint_labels(self, key: EndpointKey) -> Mapping[str, str] | None:
        """The labels policy selectors see on a local endpoint (its own, its namespace's, its profiles'), or
        None for an endpoint that is not local."""
        return self._index.effective_labels(key)

    @property
    def evaluations(self) -> int:
        """Policy selector evaluations so far."""
        return self._index.evaluations


def _entry(pid: PolicyID, meta: PolicyMeta) -> _Entry:
    order = meta.order
    return (order is None, order if order is not None else 0.0, pid.name, pid.namespace or "", pid, meta)


def _entry_sort_key(entry: _Entry) -> tuple[bool, float, str, str]:
    return entry[0], entry[1], entry[2], entry[3]

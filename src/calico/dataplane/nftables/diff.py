"""Plan nft transactions: a full table replacement, or an incremental update for what changed.

In: a `DesiredState` and the `Dirty` record taken from it. Out: ONE transaction as typed operations
(`ops.Op`; `Plan.text` is how the real transports write it), and the `TableModel` the kernel will hold once it
succeeds (the planner adopts it only on `commit()`).

Pure: no I/O. The incremental plan touches only the dirty keys (work proportional to the change), in the
order nftables needs inside one transaction: sets, their elements and new counters first, then new (empty)
chains, then rules of new and changed chains, then map elements (dispatch; floating IP NATs), then removed
chains, then sets and counters nothing uses. A counter (a rule identity, `calico.dataplane.ruleids`) lives as
long as some rule counts into it, so rewriting a chain keeps its counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from calico.calculation import events as ev
from calico.dataplane.nftables import flowlog, ops
from calico.dataplane.nftables.endpoints import endpoint_chains
from calico.dataplane.nftables.hep_chains import state_host_endpoint_chains
from calico.dataplane.nftables.model import NftChain, NftSet, TableModel
from calico.dataplane.nftables.names import FW_MAP, TW_MAP, fw_chain, policy_chain, profile_chain, set_name, tw_chain
from calico.dataplane.nftables.nat import nat_maps, pool_sets
from calico.dataplane.nftables.rules import policy_chains, profile_chains
from calico.dataplane.nftables.sets import all_set_names, canonical_host, empty_set_for_name, hosts_only, ipset_sets
from calico.dataplane.nftables.table import render_model
from calico.dataplane.state import DesiredState, Dirty, IPSet


@dataclass(slots=True)
class Plan:
    ops: tuple[ops.Op, ...]
    model: TableModel
    owned: dict[object, tuple[str, ...]]
    full: bool
    refs: Counter[str] = field(default_factory=Counter)  # set name -> number of chains using it
    stats: dict[str, int] = field(default_factory=dict)
    counter_refs: Counter[str] = field(default_factory=Counter)  # counter name -> number of chains using it

    @property
    def text(self) -> str:
        """The transaction as nft text (what the real transports run; for logs and tests)."""
        return ops.to_text(self.ops)


def _owned_full(state: DesiredState) -> dict[object, tuple[str, ...]]:
    owned: dict[object, tuple[str, ...]] = {}
    for pid in state.policies:
        owned[("policy", pid)] = (policy_chain(pid, True), policy_chain(pid, False))
    for prof in state.profiles:
        owned[("profile", prof)] = (profile_chain(prof, True), profile_chain(prof, False))
    for eid, ep in state.endpoints.items():  # fw/tw and the (shared) policy-group chains they go to
        owned[("endpoint", eid)] = tuple(c.name for c in endpoint_chains(ep, state.policies, state.profiles))
    owned[HEP_KEY] = tuple(c.name for c in state_host_endpoint_chains(state))
    return owned


HEP_KEY = ("host-endpoints",)  # all host endpoint chains, dispatch included, rendered as one unit (they are few)


def plan_full(state: DesiredState) -> Plan:
    model = render_model(state)
    refs: Counter[str] = Counter()
    counters: Counter[str] = Counter()
    for chain in model.chains.values():
        refs.update(chain.set_refs)
        counters.update(chain.counter_refs)
    return Plan((ops.ReplaceTable(model),), model, _owned_full(state), True, refs, {"chains": len(model.chains)},
                counters)


class Planner:
    """Remembers the model last committed to the kernel, and plans the next transaction against it."""

    def __init__(self) -> None:
        self.applied: TableModel | None = None
        self._owned: dict[object, tuple[str, ...]] = {}  # state key -> chain names it rendered
        self._refs: Counter[str] = Counter()  # set name -> number of chains using it
        self._counter_refs: Counter[str] = Counter()  # counter name -> number of chains using it
        # set name -> (the NftSet last seen, whether deltas may update it: see _delta_ok); keyed by the object
        # too, so a set replaced since is looked at afresh.
        self._hosts: dict[str, tuple[NftSet, bool]] = {}

    def commit(self, plan: Plan) -> None:
        self.applied = plan.model
        self._owned = plan.owned
        self._refs = plan.refs
        self._counter_refs = plan.counter_refs

    def forget(self) -> None:
        """After a failure or detected drift: the next plan is a full replacement."""
        self.applied = None

    def plan(self, state: DesiredState, dirty: Dirty) -> Plan:
        if self.applied is None or dirty.config:
            return plan_full(state)
        return self._plan_incremental(state, dirty)

    def _delta_ok(self, s: NftSet, ipset: IPSet) -> bool:
        """May `s` be updated by element deltas? Its elements must all be single addresses and every member
        spelled canonically (one spelling per element), so that a removed member's element is gone for sure."""
        cached = self._hosts.get(s.name)
        if cached is None or cached[0] is not s:
            ok = hosts_only(s) and all(canonical_host(m) for m in ipset.members)
            cached = self._hosts[s.name] = (s, ok)
        return cached[1]

    def _delta_sets(
        self, sid: str, ipset: IPSet, delta: tuple[set[str], set[str]], model: TableModel
    ) -> list[tuple[NftSet, set[str], set[str]]] | None:
        """Both family sets of an address set changed only by `delta`, each with the elements that go and come;
        None when that cannot be exact (a prefix or an odd spelling is involved, or the set is not in the
        model)."""
        if ipset.set_type is not ev.IPSetType.NET:
            return None
        added: dict[int, set[str]] = {4: set(), 6: set()}
        removed: dict[int, set[str]] = {4: set(), 6: set()}
        for members, out in ((delta[0], added), (delta[1], removed)):
            for m in members:
                h = canonical_host(m)
                if h is None:
                    return None
                out[h[0]].add(h[1])
        prevs = [model.sets.get(set_name(sid, fam)) for fam in (4, 6)]
        if any(p is None or not self._delta_ok(p, ipset) for p in prevs):
            return None
        result = []
        for fam, prev in zip((4, 6), prevs, strict=True):
            assert prev is not None
            new = added[fam] - prev.elements
            gone = (removed[fam] & prev.elements) - added[fam]
            if new or gone:
                s = NftSet(prev.name, prev.type, prev.interval, (prev.elements - gone) | new)
                self._hosts[s.name] = (s, True)
            else:
                s = prev
            result.append((s, gone, new))
        return result

    def _plan_incremental(self, state: DesiredState, dirty: Dirty) -> Plan:
        assert self.applied is not None
        old = self.applied
        model = old.copy()
        owned = dict(self._owned)
        refs = Counter(self._refs)
        counter_refs = Counter(self._counter_refs)
        set_ops: list[ops.Op] = []
        add_chain_ops: list[ops.Op] = []
        rule_ops: list[ops.Op] = []
        map_del: list[ops.Op] = []
        map_add: list[ops.Op] = []
        del_chain_ops: list[ops.Op] = []
        del_chain_tail: list[ops.Op] = []  # every removed chain is flushed before any is deleted (they jump around)
        changed_sets: set[str] = set()

        # --- chains: collect the desired chains of every dirty key ---
        desired: dict[object, list[NftChain]] = {}
        for pid in dirty.policies:
            pol = state.policies.get(pid)
            desired[("policy", pid)] = policy_chains(pol) if pol else []
        for prof in dirty.profiles:
            p = state.profiles.get(prof)
            desired[("profile", prof)] = profile_chains(p) if p else []
        ep_changes: list[tuple[object, str | None, str | None]] = []  # key, old iface, new iface
        for eid in dirty.endpoints:
            key = ("endpoint", eid)
            ep = state.endpoints.get(eid)
            old_names = owned.get(key, ())
            old_iface = old_names[0][3:] if old_names else None
            desired[key] = endpoint_chains(ep, state.policies, state.profiles) if ep else []
            ep_changes.append((key, old_iface, ep.iface if ep else None))

        if dirty.host_endpoints or dirty.policies or dirty.profiles:
            # Host endpoint chains name policies and profiles: re-render them (unchanged chains are skipped
            # below), so one that arrived after the endpoint replaces its fail-closed drop.
            desired[HEP_KEY] = state_host_endpoint_chains(state)

        removed_chains: set[str] = set()
        for key, chains in desired.items():
            chains = flowlog.all_logged(chains, state.config.flow_logs)
            new_names = {c.name for c in chains}
            for name in owned.get(key, ()):
                if name not in new_names:
                    removed_chains.add(name)
            for chain in chains:
                prev = model.chains.get(chain.name)
                if prev == chain:
                    continue
                if prev is None:
                    # A base chain (e.g. the raw stage, added with the first doNotTrack policy) needs its hook.
                    add_chain_ops.append(ops.AddChain(chain.name, chain.hook))
                else:
                    rule_ops.append(ops.FlushChain(chain.name))
                    refs.subtract(prev.set_refs)
                    counter_refs.subtract(prev.counter_refs)
                rule_ops.extend(ops.AddRule(chain.name, line) for line in chain.rules)
                refs.update(chain.set_refs)
                counter_refs.update(chain.counter_refs)
                model.chains[chain.name] = chain
                removed_chains.discard(chain.name)
            if chains:
                owned[key] = tuple(c.name for c in chains)
            else:
                owned.pop(key, None)

        # Policy-group chains are shared between endpoints: one goes only when no owner names it any more.
        if removed_chains:
            removed_chains -= {n for names in owned.values() for n in names}

        # --- dispatch maps: an endpoint's entries go after its chains exist, before they are deleted ---
        for _key, old_iface, new_iface in ep_changes:
            if old_iface is not None and old_iface != new_iface:
                for mname in (FW_MAP, TW_MAP):
                    if model.maps[mname].pop(old_iface, None) is not None:
                        map_del.append(ops.DeleteMapElements(mname, (old_iface,)))
            if new_iface is not None:
                for mname, chain_name in ((FW_MAP, fw_chain(new_iface)), (TW_MAP, tw_chain(new_iface))):
                    verdict = f"goto {chain_name}"
                    if model.maps[mname].get(new_iface) != verdict:
                        if new_iface in model.maps[mname]:
                            map_del.append(ops.DeleteMapElements(mname, (new_iface,)))
                        model.maps[mname][new_iface] = verdict
                        map_add.append(ops.AddMapElements(mname, ((new_iface, verdict),)))

        if dirty.nats:  # floating IPs: only the NAT maps' elements follow the endpoints' NATs
            for mname, want in nat_maps(state.ip_nats).items():
                have = model.maps[mname]
                gone = tuple(sorted(k for k, v in have.items() if want.get(k) != v))
                new = tuple(sorted((k, v) for k, v in want.items() if have.get(k) != v))
                if gone:
                    map_del.append(ops.DeleteMapElements(mname, gone))
                if new:
                    map_add.append(ops.AddMapElements(mname, new))
                model.maps[mname] = want

        for name in sorted(removed_chains):
            prev = model.chains.pop(name, None)
            if prev is None:
                continue
            refs.subtract(prev.set_refs)
            counter_refs.subtract(prev.counter_refs)
            del_chain_ops.append(ops.FlushChain(name))
            del_chain_tail.append(ops.DeleteChain(name))

        # --- sets: dirty IP sets, plus empty sets rules name before their members exist ---
        desired_sets: dict[str, NftSet] = {}
        known_changes: dict[str, tuple[set[str], set[str]]] = {}  # from deltas: elements that go, that come
        gone_sets: set[str] = set()
        for sid in dirty.ipsets:
            ipset = state.ipsets.get(sid)
            if ipset is not None:
                delta = dirty.ipset_deltas.get(sid)
                changed = self._delta_sets(sid, ipset, delta, model) if delta is not None else None
                if changed is not None:
                    for s, gone_elems, new_elems in changed:
                        desired_sets[s.name] = s
                        known_changes[s.name] = (gone_elems, new_elems)
                else:
                    for s in ipset_sets(sid, ipset):
                        desired_sets[s.name] = s
            else:
                gone_sets |= set(all_set_names(sid))
        if dirty.pools:  # natOutgoing: only the pool sets' elements follow the pools
            for s in pool_sets(state.pools.values()):
                desired_sets[s.name] = s
        for name, count in refs.items():
            if count > 0 and name not in model.sets and name not in desired_sets:
                desired_sets[name] = empty_set_for_name(name)
        for name, s in sorted(desired_sets.items()):
            prev = model.sets.get(name)
            if prev is None:
                set_ops.append(ops.AddSet(s))
                changed_sets.add(name)
            else:
                # A delta already knows its changes; a whole re-render is compared with what was there.
                if name in known_changes:
                    gone, new = known_changes[name]
                else:
                    gone, new = prev.elements - s.elements, s.elements - prev.elements
                if gone or new:
                    changed_sets.add(name)
                if gone:
                    set_ops.append(ops.DeleteElements(name, tuple(sorted(gone))))
                if new:
                    # Re-declaring the set with the new elements adds them without nft first fetching every
                    # element of every set in the table (`add element` does: ~70 ms at 80k elements vs ~4 ms).
                    set_ops.append(ops.AddSet(NftSet(name, s.type, s.interval, frozenset(new))))
            model.sets[name] = s
        set_tail: list[ops.Op] = []
        unreferenced = {n for n, c in refs.items() if c <= 0}
        # A set no rule names any more but still in the desired state keeps its members (a rule may name it
        # again without the graph re-sending them); only sets gone from the state are deleted.
        live = (
            {n for sid in state.ipsets for n in all_set_names(sid)}
            if unreferenced
            else set()
        )
        for name in sorted(gone_sets | (unreferenced - live)):
            prev = model.sets.get(name)
            if prev is None or name in desired_sets:
                continue
            if refs.get(name, 0) > 0:
                # Still named by a rule (graph ordering violated): keep it, but empty (matches nothing).
                if prev.elements:
                    set_ops.append(ops.DeleteElements(name, tuple(sorted(prev.elements))))
                    model.sets[name] = empty_set_for_name(name)
                continue
            set_tail.append(ops.DeleteSet(name))
            del model.sets[name]
        refs = Counter({k: v for k, v in refs.items() if v > 0})

        # --- counters: declared before the first rule counting into them, deleted after the last one went ---
        counter_refs = Counter({k: v for k, v in counter_refs.items() if v > 0})
        new_counters = sorted(set(counter_refs) - model.counters)
        gone_counters = sorted(model.counters - set(counter_refs))
        set_ops += [ops.AddCounter(n) for n in new_counters]
        set_tail += [ops.DeleteCounter(n) for n in gone_counters]
        model.counters = set(counter_refs)

        txn = (*set_ops, *add_chain_ops, *rule_ops, *map_del, *map_add, *del_chain_ops, *del_chain_tail, *set_tail)
        stats = {"commands": len(txn), "sets_changed": len(changed_sets), "chains_removed": len(removed_chains)}
        return Plan(txn, model, owned, False, refs, stats, counter_refs)

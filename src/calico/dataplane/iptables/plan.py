"""Plan iptables + ipset transactions: a full resync, or an incremental update for what changed.

In: a `DesiredState` and the `Dirty` record taken from it (incremental), or the state plus what read-back
found in the kernel (full). Out: a `Plan`: `ipset restore` text to run first (create / fill / swap),
one `iptables-restore --noflush` text per family, `ipset restore` text to run last (destroy), and the model
the kernel holds once all succeed (adopted by the `Planner` only on `commit()`). Pure: no I/O.

Incremental plans touch only dirty keys: their chains, the dispatch chains when an endpoint changed, and
their sets; chains nothing renders any more are flushed and removed in the same transaction, after the
rules that jumped to them are rewritten.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from calico.calculation import events as ev
from calico.dataplane.iptables import flowlog
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables.endpoints import dispatch_chains, endpoint_chains, endpoint_groups
from calico.dataplane.iptables.hep_chains import state_host_endpoint_chains
from calico.dataplane.iptables.model import Chain
from calico.dataplane.iptables.names import (
    BUILTIN_JUMPS,
    DISPATCH_BUCKET_PREFIXES,
    GROUP_PREFIXES,
    fw_chain,
    is_hep_chain,
    policy_chain,
    profile_chain,
    tw_chain,
)
from calico.dataplane.iptables.nat import pool_ipsets
from calico.dataplane.iptables.rules import policy_chains, profile_chains
from calico.dataplane.iptables.table import render_family, render_ipsets
from calico.dataplane.iptables.text import SavedTable, restore_text
from calico.dataplane.state import DesiredState, Dirty

FAMILIES = (4, 6)


@dataclass(slots=True)
class Plan:
    full: bool
    ipset_pre: str
    tables: dict[int, str]  # family -> iptables-restore text ("" = nothing to do)
    ipset_post: str
    models: dict[int, dict[str, Chain]]
    sets: dict[str, ips.IpsetSpec]
    refs: Counter[str]
    ifaces: dict[ev.WorkloadEndpointID, str]
    state_sets: set[str]  # kernel set names that come from the state's IP sets (not just from references)
    stats: dict[str, int] = field(default_factory=dict)
    groups: dict[ev.WorkloadEndpointID, tuple[str, ...]] = field(default_factory=dict)  # policy groups in use

    @property
    def text(self) -> str:
        """Everything this plan runs, for logs and tests."""
        return self.ipset_pre + "".join(self.tables.values()) + self.ipset_post


def _refs(models: dict[int, dict[str, Chain]]) -> Counter[str]:
    refs: Counter[str] = Counter()
    for model in models.values():
        for chain in model.values():
            refs.update(chain.set_refs)
    return refs


def plan_full(state: DesiredState, kernel: dict[int, SavedTable], kernel_sets: set[str]) -> Plan:
    """Rewrite every chain we own in the filter table, remove stale `cali-` chains and sets, insert missing
    jumps; fill every ipset, the natOutgoing pool sets included (the nat table's chains are `side`'s)."""
    models = {f: render_family(state, f) for f in FAMILIES}
    sets = render_ipsets(state, models.values())
    for spec in pool_ipsets(state.pools.values()):
        sets[spec.name] = spec
    pre: list[str] = []
    for name in sorted(sets):
        pre += ips.replace_lines(sets[name])
    tables = {}
    for f in FAMILIES:
        stale = set(kernel[f].chains) - set(models[f])
        jumps = [j for j in BUILTIN_JUMPS if j not in kernel[f].jumps]
        tables[f] = restore_text(models[f].values(), stale, jumps)
    post = ips.destroy_lines(n for n in kernel_sets if ips.is_ours(n) and n not in sets)
    state_sets = {
        ips.set_name(sid, f, s.set_type is ev.IPSetType.IP_PORT) for sid, s in state.ipsets.items() for f in FAMILIES
    }
    ifaces = {eid: ep.iface for eid, ep in state.endpoints.items()}
    stats = {"chains": sum(len(m) for m in models.values()), "sets": len(sets)}
    groups = {eid: endpoint_groups(models[4], ep.iface) for eid, ep in state.endpoints.items()}
    return Plan(True, ips.restore_text(pre), tables, ips.restore_text(post), models, sets, _refs(models), ifaces,
                state_sets, stats, groups)



class Planner:
    """Remembers what was last committed to the kernel, and plans the next transaction against it."""

    def __init__(self) -> None:
        self.applied: Plan | None = None

    def commit(self, plan: Plan) -> None:
        self.applied = plan

    def forget(self) -> None:
        """After a failure or detected drift: the next plan is a full resync."""
        self.applied = None

    def needs_full(self, dirty: Dirty) -> bool:
        return self.applied is None or dirty.config

    def plan_incremental(self, state: DesiredState, dirty: Dirty) -> Plan:
        old = self.applied
        assert old is not None
        models = {f: dict(old.models[f]) for f in FAMILIES}
        write: dict[int, dict[str, Chain]] = {f: {} for f in FAMILIES}
        delete: dict[int, set[str]] = {f: set() for f in FAMILIES}
        refs = Counter(old.refs)
        ifaces = dict(old.ifaces)
        groups = dict(old.groups)

        def drop(name: str) -> None:
            for f in FAMILIES:
                prev = models[f].pop(name, None)
                if prev is not None:
                    refs.subtract(prev.set_refs)
                    delete[f].add(name)
                write[f].pop(name, None)

        def put(f: int, chain: Chain) -> None:
            chain = flowlog.logged(chain, state.config.flow_logs)
            prev = models[f].get(chain.name)
            delete[f].discard(chain.name)
            if prev == chain:
                return
            if prev is not None:
                refs.subtract(prev.set_refs)
            refs.update(chain.set_refs)
            models[f][chain.name] = chain
            write[f][chain.name] = chain

        # Removals first, so a name reused by another key in the same batch is rewritten, not deleted.
        for pid in dirty.policies:
            if pid not in state.policies:
                drop(policy_chain(pid, True))
                drop(policy_chain(pid, False))
        for prof in dirty.profiles:
            if prof not in state.profiles:
                drop(profile_chain(prof, True))
                drop(profile_chain(prof, False))
        for eid in dirty.endpoints:
            ep = state.endpoints.get(eid)
            old_iface = ifaces.get(eid)
            if old_iface is not None and (ep is None or ep.iface != old_iface):
                drop(fw_chain(old_iface))
                drop(tw_chain(old_iface))
                del ifaces[eid]
        hep_names: list[set[str]] = []
        for f in FAMILIES:
            for pid in dirty.policies:
                if (pol := state.policies.get(pid)) is not None:
                    for c in policy_chains(pol, f):
                        put(f, c)
            for prof in dirty.profiles:
                if (p := state.profiles.get(prof)) is not None:
                    for c in profile_chains(p, f):
                        put(f, c)
            for eid in dirty.endpoints:
                if (ep := state.endpoints.get(eid)) is not None:
                    for c in endpoint_chains(ep, f, state.policies, state.profiles):
                        put(f, c)
                    ifaces[eid] = ep.iface
                    groups[eid] = endpoint_groups(models[f], ep.iface)
                else:
                    groups.pop(eid, None)
            if dirty.endpoints:
                dispatch = dispatch_chains(ifaces.values(), state.config.interface_prefixes)
                for c in dispatch:
                    put(f, c)
                keep = {c.name for c in dispatch}
                for name in [n for n in models[f] if n.startswith(DISPATCH_BUCKET_PREFIXES) and n not in keep]:
                    drop(name)  # a bucket whose last interface went
            if dirty.host_endpoints or dirty.policies or dirty.profiles:
                # Host endpoint chains name policies and profiles: re-render them (put() skips unchanged ones),
                # so a policy that arrived after the endpoint replaces its fail-closed drop.
                hep_chains = state_host_endpoint_chains(state, f)
                for c in hep_chains:
                    put(f, c)
                hep_names.append({c.name for c in hep_chains})
        if dirty.endpoints:
            # A policy group goes when no endpoint uses it any more (after the rules that went to it changed).
            in_use = {n for names in groups.values() for n in names}
            for name in {n for f in FAMILIES for n in models[f] if n.startswith(GROUP_PREFIXES)} - in_use:
                drop(name)
        if hep_names:
            keep = set().union(*hep_names)
            for name in {n for f in FAMILIES for n in models[f] if is_hep_chain(n)} - keep:
                drop(name)  # a host endpoint went away or changed interface

        # Sets: fill before the rules that name them; destroy after the last rule naming them is gone.
        sets = dict(old.sets)
        state_sets = set(old.state_sets)
        pre: list[str] = []
        gone: set[str] = set()
        for sid in sorted(dirty.ipsets):
            ipset = state.ipsets.get(sid)
            if ipset is None:
                names = ips.all_names(sid)
                state_sets -= set(names)
                gone |= set(names)
                continue
            for spec in ips.specs_for(sid, ipset):
                state_sets.add(spec.name)
                prev = sets.get(spec.name)
                if prev is None or prev.kind != spec.kind:
                    pre += ips.replace_lines(spec)
                elif prev != spec:
                    pre += ips.delta_lines(prev, spec)
                sets[spec.name] = spec
        if dirty.pools:  # natOutgoing: the pool sets follow the pools (they always exist: nat names them)
            for spec in pool_ipsets(state.pools.values()):
                if sets.get(spec.name) != spec:
                    pre += ips.delta_lines(sets[spec.name], spec) if spec.name in sets else ips.replace_lines(spec)
                    sets[spec.name] = spec
        for name, count in sorted(refs.items()):
            if count > 0 and name not in sets:  # named before its members exist: an empty set matches nothing
                sets[name] = ips.empty_spec(name)
                pre += ips.replace_lines(sets[name])
        post: list[str] = []
        for name in sorted(gone | {n for n, c in refs.items() if c <= 0}):
            if name not in sets or name in state_sets:
                continue
            if refs.get(name, 0) > 0:
                # Still named by a rule (graph ordering violated): keep it, but empty.
                if sets[name].members:
                    sets[name] = ips.empty_spec(name)
                    pre += ips.replace_lines(sets[name])
                continue
            post.append(f"destroy {name}")
            del sets[name]
        refs = Counter({k: v for k, v in refs.items() if v > 0})

        tables = {f: restore_text(write[f].values(), delete[f]) for f in FAMILIES}
        stats = {
            "chains_written": sum(len(w) for w in write.values()),
            "chains_deleted": sum(len(d) for d in delete.values()),
            "ipset_lines": len(pre) + len(post),
        }
        return Plan(False, ips.restore_text(pre), tables, ips.restore_text(post), models, sets, refs, ifaces,
                    state_sets, stats, groups)

"""The iptables dataplane backend: the one place that runs iptables-restore / iptables-save / ipset.

In: a `DesiredState` (whose dirty record it consumes). Out: Calico's `cali-` chains in the filter table
(IPv4 via iptables-restore, IPv6 via ip6tables-restore) and its `cali40`/`cali60` ipsets, in one network
namespace (`netns` name: commands run as `ip netns exec NS ...`; None: the current namespace, only for an
agent running in its own host namespace). `backend` picks the iptables flavour: "nft" (iptables-nft-*) or
"legacy" (iptables-legacy-*). Only `cali-` chains are ever written, flushed or deleted; the built-in
FORWARD / INPUT / OUTPUT chains only get one jump each, inserted when absent.

- `apply(state)`: the first call (and after config changes, a failed incremental or detected drift) reads
  the kernel and resyncs everything (one restore per family); afterwards one incremental transaction per
  family for what changed. Order: ipset creates/fills, iptables, ipset destroys.
- `check_and_repair(state)`: reads back (`iptables-save -t filter`, `ipset list -t`), compares chains'
  comment hashes, the built-in jumps and set sizes with what was applied, and resyncs when they differ.
- the side tables (`side.py`): nat (`nat.py`: metadata DNAT, floating IPs, natOutgoing; always present;
  rewritten when the config or some endpoint's NATs change) and the untracked (raw) and pre-DNAT (mangle)
  stages (`stages.py`, only with doNotTrack / preDNAT policy). After the filter transaction, each such table
  that differs from what it should hold is rewritten whole in one restore (they are small), and read back with
  the rest. natOutgoing follows the pools
  through the `cali40all-ipam-pools` / `cali40masq-ipam-pools` ipsets (and `cali60...`), which the filter
  plans keep like every other set.
- `install_fail_closed(prefixes)`: before the first sync, if our chains are absent, base chains whose
  dispatch drops every workload interface. Existing chains (an agent restart) are left to keep traffic
  flowing until the first full apply.
- `read_counters()`: the kernel counters of every verdict rule (`iptables-save -c` of filter, and of raw and
  mangle while the stages are there), per rule, with the identity its comment carries. A rewritten chain's
  rules start again from zero: `calico.dataplane.counters` keeps the totals monotonic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from calico.dataplane.config import DataplaneConfig
from calico.dataplane.counters import RawCount
from calico.dataplane.ipnat import nat_tables
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables import side
from calico.dataplane.iptables import stages as stg
from calico.dataplane.iptables.names import BUILTIN_JUMPS, FORWARD
from calico.dataplane.iptables.nat import nat_chains
from calico.dataplane.iptables.plan import FAMILIES, Plan, Planner, plan_full
from calico.dataplane.iptables.table import fail_closed_chains
from calico.dataplane.iptables.text import SavedTable, parse_counts, parse_save, restore_text
from calico.dataplane.process import ToolError, run_tool
from calico.dataplane.state import DesiredState

log = logging.getLogger(__name__)

BACKENDS = ("nft", "legacy")


class IptablesError(ToolError):
    pass


@dataclass(frozen=True, slots=True)
class Readback:
    tables: dict[int, SavedTable]
    sets: dict[str, int]  # our set name -> number of entries


class IptablesBackend:
    def __init__(self, netns: str | None = None, backend: str = "nft", ipset: str = "ipset") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"iptables backend must be one of {BACKENDS}, not {backend!r}")
        self.netns = netns
        self.backend = backend
        self.ipset = ipset
        self.restore_cmd = {4: f"iptables-{backend}-restore", 6: f"ip6tables-{backend}-restore"}
        self.save_cmd = {4: f"iptables-{backend}-save", 6: f"ip6tables-{backend}-save"}
        self.planner = Planner()
        self._stages_written = False  # do raw / mangle hold stage chains of ours (as far as we know)?
        self._side_expected: dict[tuple[int, str], side.SavedSide] = {}  # (family, table) -> what it holds
        self.last_plan: Plan | None = None
        self.last_apply_seconds = 0.0
        self.full_applies = 0
        self.incremental_applies = 0
        self.repairs = 0

    # --- process I/O --------------------------------------------------------------------------------

    async def _run(self, *argv: str, stdin: str | None = None) -> str:
        try:
            return (await run_tool(self.netns, argv, stdin))[1]
        except ToolError as e:
            raise IptablesError(str(e)) from None

    async def _restore(self, fam: int, text: str) -> None:
        if text:
            # --noflush: only the chains the text declares are replaced; -w: wait for the legacy xtables lock.
            await self._run(self.restore_cmd[fam], "--noflush", "-w", "10", stdin=text)

    async def _ipset_restore(self, text: str) -> None:
        if text:
            await self._run(self.ipset, "restore", "-exist", stdin=text)

    async def _run_plan(self, plan: Plan) -> None:
        await self._ipset_restore(plan.ipset_pre)
        await asyncio.gather(*(self._restore(f, plan.tables[f]) for f in FAMILIES))
        await self._ipset_restore(plan.ipset_post)

    # --- applying -----------------------------------------------------------------------------------

    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None:
        """Start of day, before the first sync: workload interfaces are dropped until we know them."""
        for fam in FAMILIES:
            saved = parse_save(await self._run(self.save_cmd[fam], "-t", "filter"))
            if FORWARD in saved.chains:
                continue  # our chains survived an agent restart: keep them until the first full apply
            jumps = [j for j in BUILTIN_JUMPS if j not in saved.jumps]
            await self._restore(fam, restore_text(fail_closed_chains(fam, prefixes), (), jumps))

    async def apply(self, state: DesiredState) -> Plan:
        """Bring the kernel to `state`: full resync first time, then one incremental transaction per family."""
        dirty = state.take_dirty()
        start = time.perf_counter()
        if self.planner.needs_full(dirty):
            plan = await self._apply_full(state)
        else:
            plan = self.planner.plan_incremental(state, dirty)
            try:
                await self._run_plan(plan)
            except IptablesError:
                # The kernel disagreed with what we think it holds: resync everything instead.
                log.warning("incremental iptables update failed; resyncing", exc_info=True)
                self.planner.forget()
                plan = await self._apply_full(state)
        self.planner.commit(plan)
        if plan.full or dirty.nats:  # floating IPs live in the nat table
            await self._sync_side(state, self._side_tables(state, with_nat=True))
        elif dirty.host_endpoints or dirty.policies or dirty.profiles:
            await self._sync_side(state, self._side_tables(state, with_nat=False))
        self.last_apply_seconds = time.perf_counter() - start
        self.last_plan = plan
        if plan.full:
            self.full_applies += 1
        else:
            self.incremental_applies += 1
        return plan

    async def _apply_full(self, state: DesiredState) -> Plan:
        kernel = await self.read_back()
        plan = plan_full(state, kernel.tables, set(kernel.sets))
        try:
            await self._run_plan(plan)
        except IptablesError:
            self.planner.forget()
            raise
        return plan

    # --- side tables: nat, and the untracked / pre-DNAT stages ------------------------------------------

    def _side_tables(self, state: DesiredState, with_nat: bool) -> tuple[str, ...]:
        """The side tables to sync: raw and mangle only on a host that has (or had) doNotTrack / preDNAT policy."""
        stages = stg.STAGE_TABLES if stg.stages_needed(state) or self._stages_written else ()
        return (("nat",) if with_nat else ()) + stages

    async def _read_side(self, tables: tuple[str, ...]) -> dict[tuple[int, str], side.SavedSide]:
        keys = [(f, t) for f in FAMILIES for t in tables]
        saves = await asyncio.gather(*(self._run(self.save_cmd[f], "-t", t) for f, t in keys))
        return {k: side.parse_side(k[1], text) for k, text in zip(keys, saves, strict=True)}

    async def _sync_side(self, state: DesiredState, tables: tuple[str, ...],
                         kernel: dict[tuple[int, str], side.SavedSide] | None = None) -> None:
        """Make each of `tables` hold exactly the chains of ours `state` needs, one restore per family."""
        if not tables:
            return
        kernel = kernel if kernel is not None else await self._read_side(tables)
        nats = nat_tables(state.ip_nats)
        for f in FAMILIES:
            chains = {**stg.stage_chains(state, f), "nat": nat_chains(state.config, f, nats[f])}
            text = "".join(side.side_restore_text(t, chains[t], kernel[(f, t)]) for t in tables)
            if text:
                await self._run(self.restore_cmd[f], "--noflush", "-w", "10", stdin=text)
            for t in tables:
                self._side_expected[(f, t)] = side.expected_side(t, chains[t])
        self._stages_written = any(e.chains for (_, t), e in self._side_expected.items() if t in stg.STAGE_TABLES)

    # --- read-back ----------------------------------------------------------------------------------

    async def read_back(self) -> Readback:
        saves = await asyncio.gather(*(self._run(self.save_cmd[f], "-t", "filter") for f in FAMILIES))
        sets = ips.parse_list_terse(await self._run(self.ipset, "list", "-t"))
        return Readback({f: parse_save(text) for f, text in zip(FAMILIES, saves, strict=True)}, sets)

    async def read_counters(self) -> list[RawCount]:
        tables = ("filter", *(stg.STAGE_TABLES if self._stages_written else ()))
        keys = [(f, t) for f in FAMILIES for t in tables]
        saves = await asyncio.gather(*(self._run(self.save_cmd[f], "-c", "-t", t) for f, t in keys))
        return [c for (f, t), text in zip(keys, saves, strict=True) for c in parse_counts(text, f"{f}/{t}")]

    def expected(self) -> Readback | None:
        """What read-back should find, from the last committed plan."""
        plan = self.planner.applied
        if plan is None:
            return None
        tables = {
            f: SavedTable({n: c.hashes for n, c in plan.models[f].items()}, set(BUILTIN_JUMPS))
            for f in FAMILIES
        }
        return Readback(tables, {n: len(s.members) for n, s in plan.sets.items()})

    async def check_and_repair(self, state: DesiredState) -> bool:
        """True when drift was found (and repaired by a full resync)."""
        expected = self.expected()
        if expected is None:
            await self.apply(state)
            return True
        kernel = await self.read_back()
        if kernel == expected:
            tables = self._side_tables(state, with_nat=True)
            held = await self._read_side(tables)
            drifted = [t for t in tables if any(held[(f, t)] != self._side_expected.get((f, t)) for f in FAMILIES)]
            if not drifted:
                return False
            log.warning("iptables %s chains drifted; rewriting them", "/".join(drifted))
            self.repairs += 1
            await self._sync_side(state, tables, held)
            return True
        log.warning("iptables/ipset state drifted from the applied state; resyncing: %s", _describe(expected, kernel))
        self.repairs += 1
        self.planner.forget()
        await self.apply(state)
        return True


def _describe(expected: Readback, kernel: Readback) -> str:
    notes = []
    for f in FAMILIES:
        want, have = expected.tables[f], kernel.tables[f]
        for name in sorted(set(want.chains) | set(have.chains)):
            if want.chains.get(name) != have.chains.get(name):
                notes.append(f"v{f} chain {name}")
        notes += [f"v{f} jump {b}->{t} missing" for b, t in sorted(want.jumps - have.jumps)]
    for name in sorted(set(expected.sets) | set(kernel.sets)):
        if expected.sets.get(name) != kernel.sets.get(name):
            notes.append(f"set {name}: {expected.sets.get(name)} != {kernel.sets.get(name)}")
    return ", ".join(notes[:20])


def create_firewall(config: DataplaneConfig, netns: str | None) -> IptablesBackend:
    """The backend `factory.create_driver` builds for "iptables", in the configured flavour."""
    return IptablesBackend(netns, config.iptables_flavour)


__all__ = ["BACKENDS", "IptablesBackend", "IptablesError", "Readback", "create_firewall"]

"""The nftables dataplane backend: plans transactions for Calico's table and runs them through a transport.

In: a `DesiredState` (whose dirty record it consumes) and an `NftTransport` (libnftables, a spawned `nft`, or
the in-memory fake; each bound to one network namespace). Out: Calico's `table inet calico` there. It never
touches any other table.

- `apply(state)`: first call (and after config changes or detected drift) replaces the whole table in one
  atomic transaction; afterwards one incremental transaction per call for what changed. When the kernel
  refuses an incremental one (it no longer holds what the planner thinks), the whole table is replaced.
- `check_and_repair(state)`: reads the table back (`nft -j list table inet calico`), compares it with what
  was applied (sets and their element counts, map entries, and every rule of every chain, in order, by the
  hash each rule carries as its comment) and reapplies the whole table when they differ (someone deleted the
  table, flushed a chain, replaced or inserted a rule, removed an element).
- `install_fail_closed(prefixes)`: before the first sync, a table whose dispatch drops every workload iface.
- `read_counters()`: the named counters of every verdict rule (one `list counters` call). A whole-table
  replacement (start of day, repair) first reads them and starts the new table's counters from those values,
  so the counts go on across agent restarts and repairs (`calico.dataplane.counters`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from calico.dataplane.config import DataplaneConfig
from calico.dataplane.counters import RawCount
from calico.dataplane.nftables.diff import Plan, Planner
from calico.dataplane.nftables.model import TableModel
from calico.dataplane.nftables.names import rule_tag
from calico.dataplane.nftables.ops import ReplaceTable
from calico.dataplane.nftables.table import empty_model
from calico.dataplane.nftables.transport import NftError, NftTransport, default_transport
from calico.dataplane.state import DesiredState, Dirty

log = logging.getLogger(__name__)

__all__ = ["NftBackend", "NftError", "Shape", "create_firewall", "json_shape", "model_shape"]


@dataclass(frozen=True, slots=True)
class Shape:
    """What read-back compares, cheap to compute from both the model and `nft -j` output: each set's and map's
    element count, each chain's rules by their comment tags (every rule, in order), and the counters' names."""

    sets: dict[str, int]
    maps: dict[str, int]
    chains: dict[str, tuple[str | None, ...]]
    counters: frozenset[str] = frozenset()


def model_shape(model: TableModel) -> Shape:
    return Shape(
        sets={n: len(s.elements) for n, s in model.sets.items()},
        maps={n: len(m) for n, m in model.maps.items()},
        chains={n: tuple(rule_tag(x) for x in c.rules) for n, c in model.chains.items()},
        counters=frozenset(model.counters),
    )


def json_shape(doc: dict[str, Any]) -> Shape:
    sets: dict[str, int] = {}
    maps: dict[str, int] = {}
    chains: dict[str, list[str | None]] = {}
    counters: set[str] = set()
    for item in doc.get("nftables", []):
        if "counter" in item:
            counters.add(item["counter"]["name"])
        elif "set" in item:
            sets[item["set"]["name"]] = len(item["set"].get("elem", []))
        elif "map" in item:
            maps[item["map"]["name"]] = len(item["map"].get("elem", []))
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"].get("comment"))
    return Shape(sets, maps, {n: tuple(v) for n, v in chains.items()}, frozenset(counters))


def json_counts(doc: dict[str, Any] | None) -> list[RawCount]:
    """`nft -j list counters` -> one RawCount per counter (its name is the identity it counts for)."""
    out = []
    for item in (doc or {}).get("nftables", []):
        c = item.get("counter")
        if c is not None:
            out.append(RawCount(c["name"], c["name"], int(c.get("packets", 0)), int(c.get("bytes", 0))))
    return out


class NftBackend:
    def __init__(self, transport: NftTransport) -> None:
        self.transport = transport
        self.planner = Planner()
        self.last_plan: Plan | None = None
        self.last_apply_seconds = 0.0
        self.full_applies = 0
        self.incremental_applies = 0
        self.repairs = 0

    def close(self) -> None:
        self.transport.close()

    # --- applying -----------------------------------------------------------------------------------

    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None:
        """Start of day, before the first sync: workload interfaces are dropped until we know them.

        A table left by a previous run of the agent is kept (allowed traffic keeps flowing) until the first
        full apply replaces it atomically."""
        if await self.read_back() is not None:
            return
        await self.transport.run([ReplaceTable(empty_model(prefixes))])

    async def apply(self, state: DesiredState) -> Plan:
        """Bring the kernel to `state`: full replacement first time, then one incremental transaction."""
        dirty = state.take_dirty()
        plan = self.planner.plan(state, dirty)
        start = time.perf_counter()
        try:
            try:
                await self._run_plan(plan)
            except NftError:
                if plan.full:
                    raise
                # The kernel disagreed with what we think it holds: replace the whole table instead.
                log.warning("incremental nft update failed; reapplying the whole table", exc_info=True)
                plan = self.planner.plan(state, Dirty(config=True))
                await self._run_plan(plan)
        except NftError:
            self.planner.forget()  # what the kernel holds is unknown: the next apply replaces the whole table
            raise
        self.last_apply_seconds = time.perf_counter() - start
        self.planner.commit(plan)
        self.last_plan = plan
        if plan.full:
            self.full_applies += 1
        else:
            self.incremental_applies += 1
        return plan

    async def _run_plan(self, plan: Plan) -> None:
        if plan.full:
            # The replaced table's counts carry over to the new one (a counter starts where the old one was).
            counts = {r.key: (r.packets, r.bytes) for r in await self.read_counters() if r.key in plan.model.counters}
            plan.ops = (ReplaceTable(plan.model, counts),)
        await self.transport.run(plan.ops)

    # --- read-back ----------------------------------------------------------------------------------

    async def read_counters(self) -> list[RawCount]:
        """Every named counter of the table (none when there is no table)."""
        return json_counts(await self.transport.list_counters())

    async def read_back(self) -> Shape | None:
        """The table's shape as the kernel has it, or None when the table does not exist."""
        doc = await self.transport.list_table()
        return None if doc is None else json_shape(doc)

    async def check_and_repair(self, state: DesiredState) -> bool:
        """True when drift was found (and repaired by reapplying the whole table)."""
        applied = self.planner.applied
        if applied is None:
            await self.apply(state)
            return True
        kernel = await self.read_back()
        if kernel == model_shape(applied):
            return False
        log.warning("nft table inet calico drifted from the applied state; reapplying")
        self.repairs += 1
        self.planner.forget()
        await self.apply(state)
        return True


def create_firewall(config: DataplaneConfig, netns: str | None) -> NftBackend:
    """The backend `factory.create_driver` builds for "nftables": libnftables in `netns` when it loads."""
    return NftBackend(default_transport(netns))

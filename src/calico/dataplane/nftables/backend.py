"""The nftables dataplane backend: the one place that runs `nft`.

In: a `DesiredState` (whose dirty record it consumes). Out: Calico's `table inet calico` in the kernel of
one network namespace (`netns` name: commands run as `ip netns exec NS nft ...`; None: the current
namespace, used only by an agent running in its own host namespace). It never touches any other table.

- `apply(state)`: first call (and after config changes or detected drift) replaces the whole table in one
  atomic transaction; afterwards one incremental transaction per call for what changed.
- `check_and_repair(state)`: reads the table back (`nft -j list table inet calico`), compares its shape
  (sets and their element counts, map entries, chains and their rule counts) with what was applied, and
  reapplies the whole table when they differ (someone deleted the table, flushed a chain, removed an element).
- `install_fail_closed(prefixes)`: before the first sync, a table whose dispatch drops every workload iface.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from calico.dataplane.nftables import render as r
from calico.dataplane.nftables.diff import Plan, Planner
from calico.dataplane.process import ToolError, run_tool
from calico.dataplane.state import DesiredState, Dirty

log = logging.getLogger(__name__)


class NftError(ToolError):
    pass


@dataclass(frozen=True, slots=True)
class Shape:
    """What read-back compares: cheap to compute from both the model and `nft -j` output."""

    sets: dict[str, int]
    maps: dict[str, int]
    chains: dict[str, int]


def model_shape(model: r.TableModel) -> Shape:
    return Shape(
        sets={n: len(s.elements) for n, s in model.sets.items()},
        maps={n: len(m) for n, m in model.maps.items()},
        chains={n: len(c.rules) for n, c in model.chains.items()},
    )


def json_shape(doc: dict) -> Shape:
    sets: dict[str, int] = {}
    maps: dict[str, int] = {}
    chains: dict[str, int] = {}
    for item in doc.get("nftables", []):
        if "set" in item:
            sets[item["set"]["name"]] = len(item["set"].get("elem", []))
        elif "map" in item:
            maps[item["map"]["name"]] = len(item["map"].get("elem", []))
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], 0)
        elif "rule" in item:
            name = item["rule"]["chain"]
            chains[name] = chains.get(name, 0) + 1
    return Shape(sets, maps, chains)


class NftBackend:
    def __init__(self, netns: str | None = None, nft: str = "nft") -> None:
        self.netns = netns
        self.nft = nft
        self.planner = Planner()
        self.last_plan: Plan | None = None
        self.last_apply_seconds = 0.0
        self.full_applies = 0
        self.incremental_applies = 0
        self.repairs = 0

    # --- process I/O --------------------------------------------------------------------------------

    async def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            return (await run_tool(self.netns, [self.nft, *args], stdin))[1]
        except ToolError as e:
            raise NftError(str(e)) from None

    async def run_transaction(self, text: str) -> None:
        if text:
            await self._run("-f", "-", stdin=text)

    async def check_syntax(self, text: str) -> None:
        await self._run("-c", "-f", "-", stdin=text)

    # --- applying -----------------------------------------------------------------------------------

    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None:
        """Start of day, before the first sync: workload interfaces are dropped until we know them.

        A table left by a previous run of the agent is kept (allowed traffic keeps flowing) until the first
        full apply replaces it atomically."""
        if await self.read_back() is not None:
            return
        model = r.empty_model(prefixes)
        await self.run_transaction(r.render_replace(model))

    async def apply(self, state: DesiredState) -> Plan:
        """Bring the kernel to `state`: full replacement first time, then one incremental transaction."""
        dirty = state.take_dirty()
        plan = self.planner.plan(state, dirty)
        start = time.perf_counter()
        try:
            await self.run_transaction(plan.text)
        except NftError:
            if plan.full:
                self.planner.forget()
                raise
            # The kernel disagreed with what we think it holds: replace the whole table instead.
            log.warning("incremental nft update failed; reapplying the whole table", exc_info=True)
            plan = self.planner.plan(state, Dirty(config=True))
            await self.run_transaction(plan.text)
        self.last_apply_seconds = time.perf_counter() - start
        self.planner.commit(plan)
        self.last_plan = plan
        if plan.full:
            self.full_applies += 1
        else:
            self.incremental_applies += 1
        return plan

    # --- read-back ----------------------------------------------------------------------------------

    async def read_back(self) -> Shape | None:
        """The table's shape as the kernel has it, or None when the table does not exist."""
        try:
            out = await self._run("-j", "list", "table", r.FAMILY, r.TABLE)
        except NftError as exc:
            if "No such file or directory" in str(exc):
                return None
            raise
        return json_shape(json.loads(out))

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

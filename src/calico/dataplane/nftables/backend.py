"""The nftables dataplane backend: the one place that runs `nft`.

In: a `DesiredState` (whose dirty record it consumes). Out: Calico's `table inet calico` in the kernel of
one network namespace (`netns` name: commands run as `ip netns exec NS nft ...`; None: the current
namespace, used only by an agent running in its own host namespace). It never touches any other table.

- `apply(state)`: first call (and after config changes or detected drift) replaces the whole table in one
  atomic transaction; afterwards one incremental transaction per call for what changed.
- `check_and_repair(state)`: reads the table back (`nft -j list table inet calico`), compares it with what
  was applied (sets and their element counts, map entries, and every rule of every chain, in order, by the
  hash each rule carries as its comment) and reapplies the whole table when they differ (someone deleted the
  table, flushed a chain, replaced or inserted a rule, removed an element).
- transport: libnftables in-process (a persistent context, no spawn per call), else `nft -f -` per call.
- `install_fail_closed(prefixes)`: before the first sync, a table whose dispatch drops every workload iface.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from calico.dataplane.config import DataplaneConfig
from calico.dataplane.nftables.diff import Plan, Planner
from calico.dataplane.nftables.libnft import LibNft, LibNftError
from calico.dataplane.nftables.model import TableModel
from calico.dataplane.nftables.names import FAMILY, TABLE, rule_tag
from calico.dataplane.nftables.table import empty_model
from calico.dataplane.nftables.text import render_replace
from calico.dataplane.process import ToolError, report, run_tool
from calico.dataplane.state import DesiredState, Dirty

log = logging.getLogger(__name__)


class NftError(ToolError):
    pass


@dataclass(frozen=True, slots=True)
class Shape:
    """What read-back compares, cheap to compute from both the model and `nft -j` output: each set's and map's
    element count, and each chain's rules by their comment tags (every rule, in order)."""

    sets: dict[str, int]
    maps: dict[str, int]
    chains: dict[str, tuple[str | None, ...]]


def model_shape(model: TableModel) -> Shape:
    return Shape(
        sets={n: len(s.elements) for n, s in model.sets.items()},
        maps={n: len(m) for n, m in model.maps.items()},
        chains={n: tuple(rule_tag(x) for x in c.rules) for n, c in model.chains.items()},
    )


def json_shape(doc: dict) -> Shape:
    sets: dict[str, int] = {}
    maps: dict[str, int] = {}
    chains: dict[str, list[str | None]] = {}
    for item in doc.get("nftables", []):
        if "set" in item:
            sets[item["set"]["name"]] = len(item["set"].get("elem", []))
        elif "map" in item:
            maps[item["map"]["name"]] = len(item["map"].get("elem", []))
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "rule" in item:
            chains.setdefault(item["rule"]["chain"], []).append(item["rule"].get("comment"))
    return Shape(sets, maps, {n: tuple(v) for n, v in chains.items()})


class NftBackend:
    def __init__(self, netns: str | None = None, nft: str = "nft", *, use_lib: bool | None = None) -> None:
        """`use_lib`: None picks libnftables whenever the library loads; False spawns `nft` per call."""
        self.netns = netns
        self.nft = nft
        if use_lib is None:
            use_lib = LibNft.available()
        self._lib = LibNft(netns) if use_lib else None
        self.planner = Planner()
        self.last_plan: Plan | None = None
        self.last_apply_seconds = 0.0
        self.full_applies = 0
        self.incremental_applies = 0
        self.repairs = 0

    def close(self) -> None:
        """Release the libnftables context and its thread (which holds a reference to the namespace)."""
        if self._lib is not None:
            self._lib.close()
            self._lib = None

    # --- process I/O --------------------------------------------------------------------------------

    async def _run(self, text: str, *, json_output: bool = False, dry_run: bool = False) -> str:
        """One nft command text: through libnftables when there is a context, else `nft -f -` in the target
        namespace. Either way the call is reported to `process` observers (felix_nft_calls / _errors)."""
        try:
            if self._lib is None:
                if json_output:  # `nft -j -f` would parse its input as JSON: pass the (one, ours) command as argv
                    return (await run_tool(self.netns, [self.nft, "-j", *text.split()]))[1]
                flags = ["-c"] if dry_run else []
                return (await run_tool(self.netns, [self.nft, *flags, "-f", "-"], text))[1]
            started = time.perf_counter()
            try:
                out = await self._lib.run(text, json_output=json_output, dry_run=dry_run)
            except LibNftError:
                report("nft", time.perf_counter() - started, False)
                raise
            report("nft", time.perf_counter() - started, True)
            return out
        except (ToolError, LibNftError) as e:
            raise NftError(str(e)) from None

    async def run_transaction(self, text: str) -> None:
        if text:
            await self._run(text)

    async def check_syntax(self, text: str) -> None:
        await self._run(text, dry_run=True)

    # --- applying -----------------------------------------------------------------------------------

    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None:
        """Start of day, before the first sync: workload interfaces are dropped until we know them.

        A table left by a previous run of the agent is kept (allowed traffic keeps flowing) until the first
        full apply replaces it atomically."""
        if await self.read_back() is not None:
            return
        model = empty_model(prefixes)
        await self.run_transaction(render_replace(model))

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
            out = await self._run(f"list table {FAMILY} {TABLE}", json_output=True)
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


def create_firewall(config: DataplaneConfig, netns: str | None) -> NftBackend:
    """The backend `factory.create_driver` builds for "nftables" (nothing here depends on `config` yet)."""
    return NftBackend(netns)

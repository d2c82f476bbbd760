"""Staged policies for Felix's flow logs: whether any exist, and the pending verdict of flows when they do.

Enters: the syncer's updates (`on_update`: only staged policy keys are kept, as names) and, at a flow-log
flush, the flows to judge. Leaves: each flow's pending verdict (`calico.explain.trace.Verdict`: what it would
get with the staged policies in force), computed with the same calculation as `calicoctl explain` from one
read of the datastore per flush, and only while some staged policy exists (otherwise no read at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace

from calico.dataplane.protocols import number
from calico.datastore.kv import KVStore
from calico.explain.flow import Flow
from calico.explain.pending import pending_verdicts
from calico.explain.snapshot import STAGED_PREFIXES, read
from calico.explain.trace import PolicyTrace, StageTrace, Verdict
from calico.flowlogs.records import FlowRecord, TraceStep


class PendingVerdicts:
    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        self._staged: set[str] = set()

    def on_update(self, key: str, value: bytes | None) -> None:
        if key.startswith(STAGED_PREFIXES):
            if value is None:
                self._staged.discard(key)
            else:
                self._staged.add(key)

    @property
    def active(self) -> bool:
        return bool(self._staged)

    async def annotate(self, records: list[FlowRecord]) -> list[FlowRecord]:
        """The interval's flow records with their pending verdict (unchanged while nothing is staged)."""
        if not self._staged:
            return records
        flows = {id(r): _flow(r) for r in records}
        got = await self.verdicts(f for f in flows.values() if f is not None)
        out = []
        for r in records:
            flow = flows[id(r)]
            verdict = got.get(flow) if flow is not None else None
            out.append(r if verdict is None else replace(r, pending_action=verdict.verdict,
                                                           pending_policies=_steps(verdict)))
        return out

    async def verdicts(self, flows: Iterable[Flow]) -> dict[Flow, Verdict]:
        """{} when nothing is staged. The calculation runs in a worker thread: the agent's loop never waits."""
        if not self._staged:
            return {}
        snapshot = await read(self._kv)
        wanted = list(flows)
        return await asyncio.to_thread(pending_verdicts, snapshot, wanted)


def _flow(r: FlowRecord) -> Flow | None:
    try:
        proto = number(r.proto)
    except ValueError:
        return None
    return Flow(r.source_ip, r.dest_ip, proto, r.source_port or None, r.dest_port or None)


def _steps(verdict: Verdict) -> tuple[TraceStep, ...]:
    """What decided each stage, as flow records name it (a policy's or profile's rule, or Felix's own verdict)."""
    steps = []
    for stage in verdict.stages:
        if stage.verdict == "none":
            continue  # an untracked / preDNAT stage that decided nothing
        decider = _decider(stage) if stage.decided == "rule" else None
        if decider is not None and decider.decided_by is not None:
            rule = decider.rules[decider.decided_by]
            steps.append(TraceStep(stage.stage, decider.kind, decider.tier, decider.name, rule.index,
                                   stage.verdict))
        else:
            tier = stage.tiers[-1].name if stage.decided == "tier_default" and stage.tiers else ""
            steps.append(TraceStep(stage.stage, stage.decided, tier, "", None, stage.verdict))
    return tuple(steps)


def _decider(stage: StageTrace) -> PolicyTrace | None:
    traces = [*(p for t in stage.tiers for p in t.policies), *stage.profiles]
    return next((p for p in reversed(traces) if p.outcome in ("allow", "deny")), None)

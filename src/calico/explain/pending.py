"""The pending verdicts of many flows at once (flow logs): what each would get with staged policies in force.

Enters: a `Snapshot` and `Flow`s (addresses, protocol, ports). Leaves: each flow's pending `Verdict` (none
when nothing is staged). Flows between the same two addresses share one view of the graph. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.explain.flow import Flow, Party, PartyKind
from calico.explain.snapshot import Snapshot, collector_paused
from calico.explain.trace import Verdict
from calico.explain.walk import explain_flow
from calico.explain.world import Endpoint, World, resolve


def pending_verdicts(snapshot: Snapshot, flows: Iterable[Flow]) -> dict[Flow, Verdict]:
    if not snapshot.has_staged:
        return {}
    staged, _ = snapshot.pending()
    with collector_paused():
        out: dict[Flow, Verdict] = {}
        views: dict[tuple[str, str], tuple[World, Endpoint | None, Endpoint | None]] = {}
        for flow in flows:
            pair = (flow.src_ip, flow.dst_ip)
            if pair not in views:
                src = resolve(staged, Party(PartyKind.ADDRESS, flow.src_ip))
                dst = resolve(staged, Party(PartyKind.ADDRESS, flow.dst_ip))
                ends = [e for e in (src, dst) if e is not None]
                views[pair] = (World(staged, ends, pair), src, dst)
            world, src, dst = views[pair]
            out[flow] = explain_flow(world, flow, src, dst)
        return out

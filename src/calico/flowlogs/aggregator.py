"""Logged packets and conntrack counters folded into one record per flow per flush interval.

In: logged packets (`add`: the rule identity that logged it, the flow's key, the packet's length), conntrack
entries (`conntrack`: every entry's original and reply keys with their counters), and at each flush an
endpoint lookup. Out: `flush()` -> `records.FlowRecord`s for the interval that ends. Pure.

What it keeps:
  - per flow seen this interval: the policy trace (each rule identity once, in the order logged: a packet
    meets the sender's egress stage before the receiver's ingress), whether some rule denied it, and the
    logged packets and bytes (per direction of the trace, the largest: each stage logs the same packet);
  - allowed flows across intervals ("active"): the policy is only evaluated when a connection starts, so
    later intervals learn about a long connection from conntrack alone. Each active flow keeps its trace and
    the counts last reported; a flush reports what conntrack counted since, and forgets a flow once conntrack
    no longer has it (after reporting its last counts).
Bounded: at most `max_flows` flows per interval and `max_flows` active flows; what does not fit is dropped and
counted (`dropped`), never queued. Conntrack is matched on the original tuple, and on the reply tuple turned
around (a DNATed flow is logged after the DNAT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from calico.dataplane import ruleids as rid
from calico.flowlogs.nfnetlink import CtCounts
from calico.flowlogs.packets import FlowKey
from calico.flowlogs.records import Endpoint, FlowRecord, TraceStep

_ZERO = CtCounts(0, 0, 0, 0)


@dataclass(slots=True)
class _Flow:
    first: float
    trace: list[rid.RuleID] = field(default_factory=list)
    denied: bool = False
    logged: dict[rid.Direction, list[int]] = field(default_factory=dict)  # direction -> [packets, bytes]


@dataclass(slots=True)
class _Active:
    trace: tuple[rid.RuleID, ...]
    reported: CtCounts = _ZERO
    counts: CtCounts | None = None  # conntrack's latest
    gone: bool = False  # conntrack no longer has it: report the rest once, then forget


def _reverse(k: FlowKey) -> FlowKey:
    return FlowKey(k.proto, k.dst, k.src, k.dport, k.sport)


class FlowAggregator:
    def __init__(self, max_flows: int = 100_000, start: float = 0.0) -> None:
        self.max_flows = max_flows
        self.interval_start = start
        self.flows: dict[FlowKey, _Flow] = {}
        self.active: dict[FlowKey, _Active] = {}
        self.dropped = 0  # logged packets of flows that did not fit

    def add(self, now: float, rule: rid.RuleID, key: FlowKey, length: int) -> bool:
        flow = self.flows.get(key)
        if flow is None:
            if len(self.flows) >= self.max_flows:
                self.dropped += 1
                return False
            flow = self.flows[key] = _Flow(now)
        if rule not in flow.trace:
            flow.trace.append(rule)
        flow.denied |= rule.action is rid.Action.DENY
        counts = flow.logged.setdefault(rule.direction, [0, 0])
        counts[0] += 1
        counts[1] += length
        return True

    def conntrack(self, entries: Iterable[tuple[FlowKey, FlowKey, CtCounts]]) -> None:
        """A conntrack dump: the latest counts of the flows we follow (this interval's allowed ones too)."""
        wanted = {k for k, f in self.flows.items() if not f.denied} | set(self.active)
        latest: dict[FlowKey, CtCounts] = {}
        for orig, reply, counts in entries:
            for k in (orig, _reverse(reply)):
                if k in wanted:
                    latest[k] = counts
        for key in wanted:
            counts = latest.get(key)
            active = self.active.get(key)
            if active is None:
                flow = self.flows[key]
                if counts is None or len(self.active) >= self.max_flows:
                    continue
                active = self.active[key] = _Active(tuple(flow.trace))
            if counts is None:
                active.gone = True
            else:
                active.counts, active.gone = counts, False

    def flush(self, now: float, host: str, lookup: Callable[[str], Endpoint]) -> list[FlowRecord]:
        start, end = int(self.interval_start), int(now)
        out: list[FlowRecord] = []
        for key, flow in self.flows.items():
            active = self.active.get(key)
            if not flow.denied and active is not None and active.counts is not None:
                out.append(self._record(key, start, end, host, lookup, active.trace, False, self._delta(active),
                                        "conntrack"))
                continue
            packets = max(c[0] for c in flow.logged.values())
            nbytes = max(c[1] for c in flow.logged.values())
            out.append(self._record(key, start, end, host, lookup, tuple(flow.trace), flow.denied,
                                    CtCounts(packets, nbytes, 0, 0), "log"))
        for key, active in list(self.active.items()):
            if key not in self.flows and active.counts is not None and active.counts != active.reported:
                out.append(self._record(key, start, end, host, lookup, active.trace, False, self._delta(active),
                                        "conntrack"))
            if active.gone:
                del self.active[key]
        self.flows = {}
        self.interval_start = now
        return out

    @staticmethod
    def _delta(active: _Active) -> CtCounts:
        """What conntrack counted since the last report (all of it when the entry was replaced meanwhile)."""
        now = active.counts or active.reported
        was = active.reported if all(a >= b for a, b in zip(now, active.reported, strict=True)) else _ZERO
        active.reported = now
        return CtCounts(*(a - b for a, b in zip(now, was, strict=True)))

    @staticmethod
    def _record(key: FlowKey, start: int, end: int, host: str, lookup: Callable[[str], Endpoint],
                trace: tuple[rid.RuleID, ...], denied: bool, counts: CtCounts, source: str) -> FlowRecord:
        return FlowRecord(start, end, host, key.proto_name, key.src, key.sport, lookup(key.src), key.dst, key.dport,
                          lookup(key.dst), "deny" if denied else "allow", tuple(TraceStep.of(r) for r in trace),
                          counts.packets, counts.bytes, counts.reply_packets, counts.reply_bytes, source)

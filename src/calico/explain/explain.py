"""One flow explained: resolve its ends, pick its addresses, walk it in the enforced and the pending world.

Enters: a `Snapshot`, the two `Party`s, the `Headers`, and the host endpoints the flow arrives through and
leaves through when it is forwarded (`via`, `leaves`). Leaves: an `Explanation`; `ValueError` for a flow
that cannot be formed (no common address family, a `via` that cannot be), `LookupError` for an end not in
the datastore. Pure.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace

from calico.explain.flow import ICMP_NUMBERS, Flow, Headers, Party, PartyKind
from calico.explain.path import hops
from calico.explain.snapshot import Snapshot, collector_paused
from calico.explain.trace import Explanation, Verdict
from calico.explain.walk import explain_flow
from calico.explain.world import Endpoint, World, resolve


def explain(snapshot: Snapshot, src: Party, dst: Party, headers: Headers, via: Party | None = None,
            leaves: Party | None = None) -> Explanation:
    heard = _Heard()
    graph_log = logging.getLogger("calico.calculation")
    graph_log.addHandler(heard)
    try:
        with collector_paused():
            result = _explain(snapshot, src, dst, headers, via, leaves)
    finally:
        graph_log.removeHandler(heard)
    # What the graph warned about (a value that does not validate, a rule it cannot enforce) is part of the answer.
    result.notes += [f"datastore: {m}" for m in dict.fromkeys(heard.messages)]
    return result


class _Heard(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _explain(snapshot: Snapshot, src: Party, dst: Party, headers: Headers, via: Party | None,
             leaves: Party | None) -> Explanation:
    src_ep, dst_ep = resolve(snapshot, src), resolve(snapshot, dst)
    via_ep, leaves_ep = (None if p is None else resolve(snapshot, p) for p in (via, leaves))
    hops(src_ep, dst_ep, via_ep, leaves_ep)  # a combination that cannot happen fails here, before any work
    src_ip, dst_ip = _addresses(src, src_ep, dst, dst_ep)
    arrived_ip = dst_ip
    notes: list[str] = []
    if dst_ep is not None and (internal := dict(dst_ep.nats).get(dst_ip)) is not None:
        notes.append(f"{dst_ip} is {dst_ep.label}'s floating IP: DNATed to {internal} before policy")
        dst_ip = internal
    protocol = headers.protocol
    version = ipaddress.ip_address(src_ip).version
    if protocol == ICMP_NUMBERS[4] and version == 6:
        protocol = ICMP_NUMBERS[6]
        notes.append("an IPv6 flow: ICMP taken as ICMPv6")
    flow = Flow(src_ip, dst_ip, protocol, headers.src_port, headers.dst_port, headers.icmp_type, headers.icmp_code)
    arrived = replace(flow, dst_ip=arrived_ip) if arrived_ip != dst_ip else None
    for end, party in ((src_ep, src), (dst_ep, dst)):
        if end is not None and party.kind is PartyKind.ADDRESS and party.name in end.addresses:
            notes.append(f"{party.name} is {end.label}'s address")
    notes += _host_notes(src_ep, dst_ep, via_ep, leaves_ep)
    ends = list(dict.fromkeys(e for e in (src_ep, dst_ep, via_ep, leaves_ep) if e is not None))
    addresses = tuple(dict.fromkeys((src_ip, dst_ip, arrived_ip)))
    walk = (flow, src_ep, dst_ep, via_ep, leaves_ep, arrived)
    enforced = explain_flow(World(snapshot, ends, addresses), *walk)
    pending = None
    if snapshot.has_staged:
        staged, problems = snapshot.pending()
        notes += [f"staged policies: {p}" for p in problems]
        pending = explain_flow(World(staged, ends, addresses), *walk)
    if any(s.kind == "untracked" and s.decided == "rule" and s.verdict == "allow"
           for v in (enforced, pending) if v is not None for s in v.stages):
        notes.append("allowed untracked: the connection is not tracked, so its replies need an untracked Allow "
                     "of their own")
    if flow.port_protocol and flow.src_port is None and _uses_source_ports(enforced, pending):
        notes.append("no --src-port: rules matching on source ports were taken as not matching")
    return Explanation(flow.describe(), _label(src, src_ep), _label(dst, dst_ep), snapshot.revision, enforced,
                       pending, notes)


def _host_notes(src: Endpoint | None, dst: Endpoint | None, via: Endpoint | None,
                leaves: Endpoint | None) -> list[str]:
    """What was assumed about the host endpoints the flow crosses."""
    notes = []
    if src is not None and dst is not None and src.node == dst.node and via is None and leaves is None and (
            {src.kind, dst.kind} == {PartyKind.WORKLOAD, PartyKind.HOST}):
        return [f"{src.label} and {dst.label} are on one node ({src.node}): the flow stays inside it"]
    if via is None and dst is not None and dst.kind is PartyKind.HOST:
        notes.append(f"{dst.label}: assumed the flow arrives through its interface (--via hep:NAME names "
                     "another)")
    if via is not None and (dst is None or dst.kind is not PartyKind.HOST) and leaves is None:
        notes.append("forwarded: the host endpoint it leaves through is not given (--leaves-via hep:NAME): "
                     "no egress host endpoint policy shown")
    if any(e is not None and e.kind is PartyKind.HOST for e in (src, dst, via, leaves)):
        notes.append("host endpoints: failsafe ports are Felix's defaults")
    return notes


def _label(party: Party, end: Endpoint | None) -> str:
    return end.label if end is not None else party.name


def _addresses(src: Party, src_ep: Endpoint | None, dst: Party, dst_ep: Endpoint | None) -> tuple[str, str]:
    """The flow's addresses: an address as given; an endpoint's own of the family both ends have (IPv4 first)."""
    fixed = {p.name for p in (src, dst) if p.kind is PartyKind.ADDRESS}
    versions = {ipaddress.ip_address(a).version for a in fixed}
    if len(versions) > 1:
        raise ValueError("--src and --dst are addresses of different families")
    for version in sorted(versions) or [4, 6]:
        picked = [_pick(p, e, version) for p, e in ((src, src_ep), (dst, dst_ep))]
        if picked[0] is not None and picked[1] is not None:
            return picked[0], picked[1]
    raise ValueError(f"{_label(src, src_ep)} and {_label(dst, dst_ep)} have no address family in common")


def _pick(party: Party, end: Endpoint | None, version: int) -> str | None:
    if party.kind is PartyKind.ADDRESS:
        return party.name
    assert end is not None
    return next((a for a in end.addresses if ipaddress.ip_address(a).version == version), None)


def _uses_source_ports(*verdicts: Verdict | None) -> bool:
    return any(("ports" in src or "notPorts" in src)
               for v in verdicts if v is not None for s in v.stages
               for t in [*(p for tier in s.tiers for p in tier.policies), *s.profiles] for r in t.rules
               if r.rule and isinstance(src := r.rule.get("source"), dict))

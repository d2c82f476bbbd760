"""One packet against one rendered rule: does it match, and if not, which of the rule's fields said no.

Enters: a `Flow`, a `RenderedRule` (selectors already resolved to IP set ids by the calculation graph) and a
lookup of IP set members. Leaves: the reasons the rule does not match (empty: it matches). Pure.

The semantics are the kernel's as both renderers write them (`dataplane/nftables/rules.py`,
`dataplane/iptables/rules.py`): a rule exists only for the address families it can match
(`dataplane.matches.families`); nets and sets of the other family are left out of a family's rule; an ICMP
type or code match (also a negated one) needs an ICMP packet of the flow's family; a rule with ports and no
protocol needs a protocol that carries ports; numeric and named ports of one side are OR'ed; a named-port set
holds (address, protocol, port) triples.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Protocol

from calico.calculation import events as ev
from calico.dataplane import matches
from calico.dataplane.protocols import number
from calico.explain.flow import Flow


class Sets(Protocol):
    def members(self, set_id: str) -> Iterable[str] | None: ...  # None: the set is unknown

    def describe(self, set_id: str) -> str: ...  # what the set stands for ("selector app == 'web'")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=65536)
def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _in_nets(addr: Address, nets: Iterable[str]) -> bool:
    for n in nets:
        net = _net(n)
        if net.version == addr.version and addr in net:
            return True
    return False


def _of_family(nets: Iterable[str], fam: int) -> list[str]:
    return [n for n in nets if _net(n).version == fam]


def _in_set(addr: Address, members: Iterable[str] | None) -> bool:
    return members is not None and _in_nets(addr, members)


def _in_named(addr: Address, proto: str | None, port: int | None, members: Iterable[str] | None) -> bool:
    if members is None or proto is None or port is None:
        return False
    for m in members:
        np = matches.named_port(m, addr.version)
        if np is not None and np.ip == addr and np.protocol == proto and np.port == port:
            return True
    return False


def _in_ranges(port: int | None, ranges: Sequence[ev.PortRange]) -> bool:
    return port is not None and any(lo <= port <= hi for lo, hi in ranges)


def _show_ranges(ranges: Sequence[ev.PortRange]) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def mismatches(flow: Flow, rule: ev.RenderedRule, sets: Sets) -> list[str]:
    """Why `rule` does not match `flow` (one entry per field that says no); [] when it matches."""
    fam = flow.version
    if fam not in matches.families(rule):
        return [f"the rule matches only IPv{'/'.join(str(f) for f in sorted(matches.families(rule))) or ' nothing'}"]
    why: list[str] = []
    src, dst = ipaddress.ip_address(flow.src_ip), ipaddress.ip_address(flow.dst_ip)
    if rule.protocol is not None and number(rule.protocol) != flow.protocol:
        why.append(f"protocol is not {rule.protocol}")
    if rule.not_protocol is not None and number(rule.not_protocol) == flow.protocol:
        why.append(f"notProtocol {rule.not_protocol}")
    if rule.icmp_type is not None:
        if not flow.is_icmp:
            why.append("icmp: not an ICMP packet")
        elif flow.icmp_type != rule.icmp_type or (rule.icmp_code is not None and flow.icmp_code != rule.icmp_code):
            code = "" if rule.icmp_code is None else f" code {rule.icmp_code}"
            why.append(f"icmp: not type {rule.icmp_type}{code}")
    if rule.not_icmp_type is not None:
        if not flow.is_icmp:
            why.append("notICMP: not an ICMP packet")
        elif flow.icmp_type == rule.not_icmp_type and (rule.not_icmp_code is None
                                                       or flow.icmp_code == rule.not_icmp_code):
            why.append("notICMP: the packet is of that type")
    for side, addr, nets, not_nets, set_ids, not_set_ids in (
        ("source", src, rule.src_nets, rule.not_src_nets, rule.src_ip_set_ids, rule.not_src_ip_set_ids),
        ("destination", dst, rule.dst_nets, rule.not_dst_nets, rule.dst_ip_set_ids, rule.not_dst_ip_set_ids),
    ):
        if nets and not _in_nets(addr, _of_family(nets, fam)):
            why.append(f"{side} nets: {addr} is not in {', '.join(nets)}")
        if _in_nets(addr, _of_family(not_nets, fam)):
            why.append(f"{side} notNets: {addr} is in {', '.join(not_nets)}")
        for sid in set_ids:
            if not _in_set(addr, sets.members(sid)):
                why.append(f"{side}: {addr} is not in {sets.describe(sid)}")
        for sid in not_set_ids:
            if _in_set(addr, sets.members(sid)):
                why.append(f"{side} (negated): {addr} is in {sets.describe(sid)}")
    if matches.has_ports(rule):
        why += _port_mismatches(flow, rule, sets, src, dst)
    return why


def _port_mismatches(flow: Flow, rule: ev.RenderedRule, sets: Sets, src: Address,
                     dst: Address) -> list[str]:
    proto = flow.port_protocol
    if proto is None or (rule.protocol is None and flow.port_protocol is None):
        return ["ports: the protocol carries no ports"]
    why = []
    for side, addr, port, ports, named, not_ports, not_named in (
        ("source", src, flow.src_port, rule.src_ports, rule.src_named_port_set_ids, rule.not_src_ports,
         rule.not_src_named_port_set_ids),
        ("destination", dst, flow.dst_port, rule.dst_ports, rule.dst_named_port_set_ids, rule.not_dst_ports,
         rule.not_dst_named_port_set_ids),
    ):
        if (ports or named) and not (_in_ranges(port, ports)
                                     or any(_in_named(addr, proto, port, sets.members(s)) for s in named)):
            shown = [_show_ranges(ports)] if ports else []
            shown += [sets.describe(s) for s in named]
            why.append(f"{side} ports: {'*' if port is None else port} is not in {' or '.join(shown)}")
        if _in_ranges(port, not_ports):
            why.append(f"{side} notPorts: {port} is in {_show_ranges(not_ports)}")
        for s in not_named:
            if _in_named(addr, proto, port, sets.members(s)):
                why.append(f"{side} notPorts: {port} is in {sets.describe(s)}")
    return why

"""Calico rules as nftables rule text, and the chains of a policy or a profile.

In: `RenderedRule`s of a policy or profile (selectors already resolved to IP set ids). Out: `NftChain`s
`pi-`/`po-<policy>` and `pri-`/`pro-<profile>`, their rules as nft text, with the named sets they use.
Verdicts travel as mark bits (`calico.dataplane.marks`): Allow sets MARK_ACCEPT and returns, Pass sets
MARK_PASS and returns (in a profile, where no tier follows, it just returns), Deny drops, Log logs and goes
on. A rule that cannot be rendered ends its chain with a drop (fail closed). Every rule with a verdict counts
into the counter object of its identity (`calico.dataplane.ruleids`: policy or profile, direction, index,
action). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.calculation import events as ev
from calico.dataplane import matches
from calico.dataplane import ruleids as rid
from calico.dataplane.marks import MARK_ACCEPT, MARK_PASS
from calico.dataplane.nftables.model import NftChain
from calico.dataplane.nftables.names import count, policy_chain, profile_chain, quote, set_name
from calico.dataplane.nftables.sets import collapse
from calico.dataplane.protocols import PORT_PROTOCOL_NAMES, kernel_name

_ANY_PORT_PROTOCOL = "meta l4proto { " + ", ".join(PORT_PROTOCOL_NAMES) + " }"


def ports_expr(ranges: Iterable[ev.PortRange]) -> str:
    items = [str(a) if a == b else f"{a}-{b}" for a, b in sorted(set(ranges))]
    return "{ " + ", ".join(items) + " }"


def nets_expr(nets: list[str]) -> str:
    return "{ " + ", ".join(nets) + " }"


def _families(rule: ev.RenderedRule) -> list[int | None]:
    """Which address families this rule needs a variant for; [None] means one family-agnostic rule."""
    fams = matches.families(rule)
    if fams == {4, 6} and not matches.family_specific(rule):
        return [None]
    return sorted(fams)


def _action(rule: ev.RenderedRule, chain: str, profile: bool) -> str | None:
    action = rule.action.lower()
    if action == "allow":
        return f"meta mark set meta mark | {MARK_ACCEPT:#010x} return"
    if action == "deny":
        return "drop"
    if action == "pass":
        # In a profile there is no next tier: Pass means "no match here".
        return "return" if profile else f"meta mark set meta mark | {MARK_PASS:#010x} return"
    if action == "log":
        return f"log prefix {quote(f'calico-{chain[:20]} ')}"
    return None


def render_rule(rule: ev.RenderedRule, chain: str, profile: bool = False,
                counter: rid.RuleID | None = None) -> tuple[list[str], set[str]]:
    """One Calico rule -> nft rule lines (one per address family and per OR-ed port alternative) and the
    named sets they use; with `counter`, each line counts into it. Raises ValueError for what cannot be
    rendered (the caller fails closed)."""
    verdict = _action(rule, chain, profile)
    if verdict is None:
        raise ValueError(f"unknown action {rule.action!r}")
    if counter is not None:
        verdict = f"{count(counter)} {verdict}"
    lines: list[str] = []
    refs: set[str] = set()
    for fam in _families(rule):
        m: list[str] = []
        ip = {4: "ip", 6: "ip6", None: ""}[fam]
        if fam is not None:
            m.append(f"meta nfproto ipv{fam}")
        if rule.protocol is not None:
            m.append(f"meta l4proto {kernel_name(rule.protocol)}")
        if rule.not_protocol is not None:
            m.append(f"meta l4proto != {kernel_name(rule.not_protocol)}")
        icmp = "icmp" if fam == 4 else "icmpv6"
        if rule.icmp_type is not None:
            m.append(f"{icmp} type {rule.icmp_type}")
            if rule.icmp_code is not None:
                m.append(f"{icmp} code {rule.icmp_code}")
        if rule.not_icmp_type is not None:
            # notICMP {type, code}: the packet must not match the pair (or the type, without a code).
            if rule.not_icmp_code is not None:
                m.append(f"{icmp} type . {icmp} code != {{ {rule.not_icmp_type} . {rule.not_icmp_code} }}")
            else:
                m.append(f"{icmp} type != {rule.not_icmp_type}")
        if fam is not None:
            for direction, nets, not_nets, sets, not_sets in (
                ("saddr", rule.src_nets, rule.not_src_nets, rule.src_ip_set_ids, rule.not_src_ip_set_ids),
                ("daddr", rule.dst_nets, rule.not_dst_nets, rule.dst_ip_set_ids, rule.not_dst_ip_set_ids),
            ):
                if nets:
                    m.append(f"{ip} {direction} {nets_expr(collapse(nets, fam))}")
                nn = collapse(not_nets, fam)
                if nn:
                    m.append(f"{ip} {direction} != {nets_expr(nn)}")
                for sid in sets:
                    name = set_name(sid, fam)
                    refs.add(name)
                    m.append(f"{ip} {direction} @{name}")
                for sid in not_sets:
                    name = set_name(sid, fam)
                    refs.add(name)
                    m.append(f"{ip} {direction} != @{name}")
        if matches.has_ports(rule) and rule.protocol is None:
            # Calico only allows ports with TCP/UDP/SCTP; without a protocol, match any of those.
            m.append(_ANY_PORT_PROTOCOL)
        for direction, addr, not_ports, not_named in (
            ("sport", "saddr", rule.not_src_ports, rule.not_src_named_port_set_ids),
            ("dport", "daddr", rule.not_dst_ports, rule.not_dst_named_port_set_ids),
        ):
            if not_ports:
                m.append(f"th {direction} != {ports_expr(not_ports)}")
            for sid in not_named:
                name = set_name(sid, fam or 4, named_port=True)
                refs.add(name)
                m.append(f"{ip} {addr} . meta l4proto . th {direction} != @{name}")
        # Numeric and named ports of one side are OR'ed: one line per alternative (cross product of sides).
        alternatives: list[list[str]] = [[]]
        for direction, addr, ports, named in (
            ("sport", "saddr", rule.src_ports, rule.src_named_port_set_ids),
            ("dport", "daddr", rule.dst_ports, rule.dst_named_port_set_ids),
        ):
            options: list[str] = []
            if ports:
                options.append(f"th {direction} {ports_expr(ports)}")
            for sid in named:
                name = set_name(sid, fam or 4, named_port=True)
                refs.add(name)
                options.append(f"{ip} {addr} . meta l4proto . th {direction} @{name}")
            if options:
                alternatives = [[*alt, o] for alt in alternatives for o in options]
        for alt in alternatives:
            lines.append(" ".join([*m, *alt, verdict]))
    return lines, refs


def _rules_chain(name: str, owner: ev.PolicyID | str, inbound: bool, rules: tuple[ev.RenderedRule, ...],
                 profile: bool) -> NftChain:
    lines: list[str] = []
    refs: set[str] = set()
    for index, rule in enumerate(rules):
        try:
            rl, rr = render_rule(rule, name, profile, rid.of_rule(owner, inbound, index, rule.action))
        except (ValueError, TypeError):
            # Fail closed: an unrenderable rule ends the chain with a drop, never a silent skip.
            lines.append(f"{count(rid.bad_rule(owner, inbound, index))} drop")
            break
        lines.extend(rl)
        refs |= rr
    return NftChain(name, tuple(lines), set_refs=frozenset(refs))


def policy_chains(policy: ev.PolicyUpdate) -> list[NftChain]:
    pid = policy.policy_id
    return [
        _rules_chain(policy_chain(pid, True), pid, True, policy.inbound, False),
        _rules_chain(policy_chain(pid, False), pid, False, policy.outbound, False),
    ]


def profile_chains(profile: ev.ProfileUpdate) -> list[NftChain]:
    prof = profile.profile_id
    return [
        _rules_chain(profile_chain(prof, True), prof, True, profile.inbound, True),
        _rules_chain(profile_chain(prof, False), prof, False, profile.outbound, True),
    ]

"""Calico rules as iptables rules of one address family, and the chains of a policy or a profile.

In: `RenderedRule`s of a policy or profile (selectors already resolved to IP set ids) and a family (4, 6).
Out: `Chain`s `cali-pi-`/`cali-po-<policy>` and `cali-pri-`/`cali-pro-<profile>` with the ipsets they name.
Allow sets MARK_ACCEPT and returns, Pass sets MARK_PASS and returns (an iptables rule has one target, so the
return is a second rule, `-m mark --mark X/X -j RETURN`; in a profile Pass just returns), Deny drops, Log
logs and goes on. A rule that cannot be rendered ends its chain with a drop (fail closed). The rules that
decide carry their identity (`calico.dataplane.ruleids`) in their comment: their kernel counters are its. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from calico.calculation import events as ev
from calico.dataplane import matches
from calico.dataplane import ruleids as rid
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import policy_chain, profile_chain, quote
from calico.dataplane.iptables.walk import ACCEPTED
from calico.dataplane.marks import MARK_ACCEPT, MARK_PASS
from calico.dataplane.protocols import PORT_PROTOCOL_NAMES, kernel_name, number

MAX_MULTIPORT = 15  # port slots per multiport match; a range takes two


def own_nets(nets: Iterable[str], fam: int) -> list[str]:
    return sorted(ips.net_members(nets, fam))


def port_chunks(ranges: Iterable[ev.PortRange]) -> list[str]:
    """Multiport arguments, at most MAX_MULTIPORT slots each (a range counts as two)."""
    chunks: list[str] = []
    cur: list[str] = []
    used = 0
    for a, b in sorted(set(ranges)):
        cost = 1 if a == b else 2
        if used + cost > MAX_MULTIPORT:
            chunks.append(",".join(cur))
            cur, used = [], 0
        cur.append(str(a) if a == b else f"{a}:{b}")
        used += cost
    if cur:
        chunks.append(",".join(cur))
    return chunks


def not_nets(flag: str, nets: list[str], plain_ok: bool = False) -> list[str]:
    if plain_ok and len(nets) == 1:
        return [f"! {flag} {nets[0]}"]
    # `-s` appears at most once per rule (a positive net may need it); iprange can repeat, and a CIDR is a range.
    rng = "--src-range" if flag == "-s" else "--dst-range"
    out = []
    for n in nets:
        net = ipaddress.ip_network(n)
        out.append(f"-m iprange ! {rng} {net.network_address}-{net.broadcast_address}")
    return out


def _action(rule: ev.RenderedRule, chain: str, profile: bool) -> tuple[str, Rule | None]:
    """(target of each matching rule, optional follow-up rule) for the Calico action."""
    action = rule.action.lower()
    if action == "allow":
        return f"-j MARK --set-xmark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}", Rule(ACCEPTED, "-j RETURN")
    if action == "deny":
        return "-j DROP", None
    if action == "pass":
        if profile:  # no next tier after profiles: Pass means "no match here"
            return "-j RETURN", None
        mark = f"-m mark --mark {MARK_PASS:#x}/{MARK_PASS:#x}"
        return f"-j MARK --set-xmark {MARK_PASS:#x}/{MARK_PASS:#x}", Rule(mark, "-j RETURN")
    if action == "log":
        return f"-j LOG --log-prefix {quote(f'calico-{chain[5:25]} ')}", None
    raise ValueError(f"unknown action {rule.action!r}")


def render_rule(rule: ev.RenderedRule, fam: int, chain: str, profile: bool = False,
                counter: rid.RuleID | None = None) -> tuple[list[Rule], set[str]]:
    """One Calico rule -> iptables rules of one family (one per OR-ed alternative) and the ipsets named; the
    matching ones carry `counter`. Empty when the rule cannot match this family. Raises ValueError when it
    cannot be rendered."""
    target, follow = _action(rule, chain, profile)
    counted = None if counter is None else counter.text
    if fam not in matches.families(rule):
        return [], set()
    refs: set[str] = set()
    base: list[str] = []
    icmp_name = kernel_name("ICMP" if fam == 4 else "ICMPv6")
    # Which `-p` variants to emit: multiport needs an explicit protocol, and Calico's ports mean tcp/udp/sctp.
    if rule.protocol is not None:
        if rule.not_protocol is not None and number(rule.not_protocol) == number(rule.protocol):
            return [], set()  # protocol X and not X: never matches
        protos: list[str | None] = [kernel_name(rule.protocol)]
    elif matches.has_ports(rule):
        excluded = number(rule.not_protocol) if rule.not_protocol is not None else None
        protos = [p for p in PORT_PROTOCOL_NAMES if number(p) != excluded]
    elif rule.icmp_type is not None or rule.not_icmp_type is not None:
        protos = [icmp_name]
    else:
        protos = [None]
        if rule.not_protocol is not None:
            base.append(f"! -p {kernel_name(rule.not_protocol)}")
    icmp_mod = "-m icmp --icmp-type" if fam == 4 else "-m icmp6 --icmpv6-type"
    if rule.icmp_type is not None:
        code = f"/{rule.icmp_code}" if rule.icmp_code is not None else ""
        base.append(f"{icmp_mod} {rule.icmp_type}{code}")
    if rule.not_icmp_type is not None:
        code = f"/{rule.not_icmp_code}" if rule.not_icmp_code is not None else ""
        mod, opt = icmp_mod.rsplit(" ", 1)
        base.append(f"{mod} ! {opt} {rule.not_icmp_type}{code}")
    # Positive nets of one side are OR'ed: one alternative per CIDR.
    alternatives: list[list[str]] = [[]]
    for flag, nets, negated, sets, not_sets, side in (
        ("-s", rule.src_nets, rule.not_src_nets, rule.src_ip_set_ids, rule.not_src_ip_set_ids, "src"),
        ("-d", rule.dst_nets, rule.not_dst_nets, rule.dst_ip_set_ids, rule.not_dst_ip_set_ids, "dst"),
    ):
        if nets:
            own = own_nets(nets, fam)
            if not own:
                return [], set()
            alternatives = [[*alt, f"{flag} {n}"] for alt in alternatives for n in own]
        nn = own_nets(negated, fam)
        if nn:
            base += not_nets(flag, nn)
        for sid in sets:
            name = ips.set_name(sid, fam)
            refs.add(name)
            base.append(f"-m set --match-set {name} {side}")
        for sid in not_sets:
            name = ips.set_name(sid, fam)
            refs.add(name)
            base.append(f"-m set ! --match-set {name} {side}")
    port_base: list[str] = []
    for opt, side, not_ports, not_named in (
        ("--sports", "src,src", rule.not_src_ports, rule.not_src_named_port_set_ids),
        ("--dports", "dst,dst", rule.not_dst_ports, rule.not_dst_named_port_set_ids),
    ):
        port_base += [f"-m multiport ! {opt} {c}" for c in port_chunks(not_ports)]
        for sid in not_named:
            name = ips.set_name(sid, fam, named_port=True)
            refs.add(name)
            port_base.append(f"-m set ! --match-set {name} {side}")
    # Numeric and named ports of one side are OR'ed; >15 ports split into several alternatives.
    for opt, side, ports, named in (
        ("--sports", "src,src", rule.src_ports, rule.src_named_port_set_ids),
        ("--dports", "dst,dst", rule.dst_ports, rule.dst_named_port_set_ids),
    ):
        options = [f"-m multiport {opt} {c}" for c in port_chunks(ports)]
        for sid in named:
            name = ips.set_name(sid, fam, named_port=True)
            refs.add(name)
            options.append(f"-m set --match-set {name} {side}")
        if options:
            alternatives = [[*alt, o] for alt in alternatives for o in options]
    out: list[Rule] = []
    for p in protos:
        head = [f"-p {p}"] if p else []
        for alt in alternatives:
            out.append(Rule(" ".join([*head, *base, *port_base, *alt]), target, counted))
    if follow is not None:
        out.append(follow)
    return out, refs


def _rules_chain(name: str, owner: ev.PolicyID | str, inbound: bool, rules: tuple[ev.RenderedRule, ...], fam: int,
                 profile: bool) -> Chain:
    out: list[Rule] = []
    refs: set[str] = set()
    for index, rule in enumerate(rules):
        try:
            rl, rr = render_rule(rule, fam, name, profile, rid.of_rule(owner, inbound, index, rule.action))
        except (ValueError, TypeError):
            # Fail closed: an unrenderable rule ends the chain with a drop, never a silent skip.
            out.append(Rule("", "-j DROP", rid.bad_rule(owner, inbound, index).text))
            break
        out.extend(rl)
        refs |= rr
    return Chain(name, tuple(out), frozenset(refs))


def policy_chains(policy: ev.PolicyUpdate, fam: int) -> list[Chain]:
    pid = policy.policy_id
    return [
        _rules_chain(policy_chain(pid, True), pid, True, policy.inbound, fam, False),
        _rules_chain(policy_chain(pid, False), pid, False, policy.outbound, fam, False),
    ]


def profile_chains(profile: ev.ProfileUpdate, fam: int) -> list[Chain]:
    prof = profile.profile_id
    return [
        _rules_chain(profile_chain(prof, True), prof, True, profile.inbound, fam, True),
        _rules_chain(profile_chain(prof, False), prof, False, profile.outbound, fam, True),
    ]

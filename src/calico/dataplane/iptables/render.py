"""Render desired dataplane state into Calico's iptables chains (filter table, one model per IP family).

In: a `DesiredState` (or single policies / profiles / endpoints from it) and an address family (4 or 6).
Out: `Chain`s (name, rules as iptables match/target text, the ipsets they name) and, from them,
`iptables-restore --noflush` text. Pure: no I/O. Same semantics as the nftables backend
(`calico.dataplane.nftables.render`), in Calico's iptables layout:

    FORWARD / INPUT / OUTPUT   one jump each, inserted at the top, to cali-FORWARD / cali-INPUT / cali-OUTPUT
    cali-FORWARD               ct established/related accept; invalid from/to a workload drop; clear our mark
                               bits; -> cali-from-hep-forward; -i <prefix>+ -> cali-from-wl-dispatch;
                               -o <prefix>+ -> cali-to-wl-dispatch; -> cali-to-hep-forward; accept what policy
                               accepted
    cali-INPUT                 -i <prefix>+ -> cali-wl-to-host; -> cali-from-host-endpoint
    cali-OUTPUT                -o <prefix>+ return (host -> local workload is allowed, as in Calico);
                               -> cali-to-host-endpoint
    cali-from-host-endpoint,   host endpoint dispatch (workload interfaces and lo return first): -i/-o <iface>
    cali-to-host-endpoint,     -g cali-fh-/cali-th-/cali-fhfw-/cali-thfw-<iface>, then the "*" endpoint's
    cali-from/to-hep-forward   chain if there is one. fh/th: ct, cali-failsafe-in/-out, tiers, profiles, DROP;
                               fhfw/thfw: applyOnForward tiers, DROP (RETURN when none apply)
    nat cali-PREROUTING        (IPv4, only with OpenStack metadata) 169.254.169.254:80 DNAT to MetadataAddr
    raw / mangle               (only with doNotTrack / preDNAT policy) the untracked and pre-DNAT stages:
                               see `stages.py`; what they allow skips the host endpoint chains above
    cali-wl-to-host            ct, DHCP, DNS, IPv6 ND accepted; egress policy via cali-from-wl-dispatch;
                               then DefaultEndpointToHostAction
    cali-from-wl-dispatch      -i cali7+ -g cali-fwd-cali7 (a bucket per first character after the prefix);
                               -i <prefix>+ DROP   <- fail closed
    cali-fwd-<bucket>          -i <iface> -g cali-fw-<iface> ...; DROP
    cali-to-wl-dispatch, cali-twd-<bucket>   the same for -o / cali-tw-<iface>
    cali-fw-<iface>/cali-tw-<iface>  clear marks, anti-spoof (fw), goto the endpoint's policy group
    cali-pgi-/cali-pgo-<hash>  a policy group: tiers, profiles, DROP; shared by endpoints with equal policies
    cali-pi-<id>/cali-po-<id>  a policy's inbound / outbound rules; cali-pri-<id>/cali-pro-<id> a profile's

Allow sets MARK_ACCEPT and returns, Pass sets MARK_PASS and returns (an iptables rule has one target, so the
return is a second rule, `-m mark --mark X/X -j RETURN`), Deny drops, Log logs and continues. Every rule
carries a comment `cali:<hash>`; the hash chains over the rule's text and the previous rule's hash, so
read-back can tell a chain is exactly as written by comparing its comment hashes in order.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import FailsafePort
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.state import DesiredState

MARK_ACCEPT = 0x10000
MARK_PASS = 0x20000
MARK_BOTH = MARK_ACCEPT | MARK_PASS
MARK_HEP_ALLOWED = 0x40000  # set by the untracked / pre-DNAT stages (stages.py) on what they allow

FORWARD = "cali-FORWARD"
INPUT = "cali-INPUT"
OUTPUT = "cali-OUTPUT"
FROM_WL = "cali-from-wl-dispatch"
TO_WL = "cali-to-wl-dispatch"
WL_TO_HOST = "cali-wl-to-host"
CHAIN_PREFIX = "cali-"
BUILTIN_JUMPS = (("FORWARD", FORWARD), ("INPUT", INPUT), ("OUTPUT", OUTPUT))
MAX_CHAIN = 28  # kernel limit for chain names
MAX_MULTIPORT = 15  # port slots per multiport match; a range takes two

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_ACCEPTED = f"-m mark --mark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}"
_NOT_PASSED = f"-m mark --mark 0x0/{MARK_PASS:#x}"


@dataclass(frozen=True, slots=True)
class Rule:
    match: str  # iptables match text, "" for none
    target: str  # "-j DROP", "-g cali-fw-x", ...


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    set_refs: frozenset[str] = frozenset()  # ipsets its rules name (sets must outlive the rules)
    hashes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashes", rule_hashes(self.name, self.rules))


def _b64hash(text: str, n: int) -> str:
    return base64.urlsafe_b64encode(hashlib.sha224(text.encode()).digest()).decode()[:n]


def rule_hashes(chain: str, rules: Iterable[Rule]) -> tuple[str, ...]:
    out = []
    prev = chain
    for rule in rules:
        prev = _b64hash(f"{prev}\x00{rule.match}\x00{rule.target}", 16)
        out.append(prev)
    return tuple(out)


def jump_hash(builtin: str, target: str) -> str:
    return _b64hash(f"jump\x00{builtin}\x00{target}", 16)


# --- names --------------------------------------------------------------------------------------------


def _chain_id(prefix: str, *parts: str) -> str:
    """Readable id when it fits in MAX_CHAIN, otherwise "_" + hash (a readable id never starts with "_")."""
    if all(_SAFE.match(p) for p in parts) and not parts[0].startswith("_"):
        ident = "/".join(parts)
        if len(prefix) + len(ident) <= MAX_CHAIN:
            return prefix + ident
    return prefix + "_" + _b64hash("\x00".join(parts), MAX_CHAIN - len(prefix) - 1)


def policy_chain(pid: ev.PolicyID, inbound: bool) -> str:
    parts = (pid.tier, pid.namespace, pid.name) if pid.namespace is not None else (pid.tier, pid.name)
    return _chain_id("cali-pi-" if inbound else "cali-po-", *parts)


def profile_chain(profile_id: str, inbound: bool) -> str:
    return _chain_id("cali-pri-" if inbound else "cali-pro-", profile_id)


def fw_chain(iface: str) -> str:
    return f"cali-fw-{iface}"  # ifnames are at most 15 chars: 23 <= 28


def tw_chain(iface: str) -> str:
    return f"cali-tw-{iface}"


def _q(text: str) -> str:
    return '"' + text.replace('"', "").replace("\\", "") + '"'


# --- rules --------------------------------------------------------------------------------------------

_PROTO_NAMES = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "udplite": "udplite", "icmp": "icmp"}
_PORT_PROTOS = ("tcp", "udp", "sctp")


def _proto(p: str | int, fam: int) -> str:
    text = str(p).lower()
    if isinstance(p, int) or text.isdigit():
        return str(int(p))
    if text == "icmpv6":
        return "ipv6-icmp"
    name = _PROTO_NAMES.get(text)
    if name is None:
        raise ValueError(f"unknown protocol {p!r}")
    return name


def _rule_families(rule: ev.RenderedRule) -> set[int]:
    fams = {4, 6}
    if rule.ip_version in (4, 6):
        fams &= {rule.ip_version}
    proto = str(rule.protocol).lower() if rule.protocol is not None else None
    if proto in ("icmp", "1"):
        fams &= {4}
    elif proto in ("icmpv6", "58"):
        fams &= {6}
    for nets in (rule.src_nets, rule.dst_nets):
        if nets:
            fams &= {ipaddress.ip_network(n, strict=False).version for n in nets}
    return fams


def _nets(nets: Iterable[str], fam: int) -> list[str]:
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


def _not_nets(flag: str, nets: list[str], plain_ok: bool = False) -> list[str]:
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
        return f"-j MARK --set-xmark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}", Rule(_ACCEPTED, "-j RETURN")
    if action == "deny":
        return "-j DROP", None
    if action == "pass":
        if profile:  # no next tier after profiles: Pass means "no match here"
            return "-j RETURN", None
        mark = f"-m mark --mark {MARK_PASS:#x}/{MARK_PASS:#x}"
        return f"-j MARK --set-xmark {MARK_PASS:#x}/{MARK_PASS:#x}", Rule(mark, "-j RETURN")
    if action == "log":
        return f"-j LOG --log-prefix {_q(f'calico-{chain[5:25]} ')}", None
    raise ValueError(f"unknown action {rule.action!r}")


def render_rule(rule: ev.RenderedRule, fam: int, chain: str, profile: bool = False) -> tuple[list[Rule], set[str]]:
    """One Calico rule -> iptables rules of one family (one per OR-ed alternative) and the ipsets named.
    Empty when the rule cannot match this family. Raises ValueError when it cannot be rendered."""
    target, follow = _action(rule, chain, profile)
    if fam not in _rule_families(rule):
        return [], set()
    refs: set[str] = set()
    base: list[str] = []
    has_ports = bool(
        rule.src_ports or rule.dst_ports or rule.not_src_ports or rule.not_dst_ports
        or rule.src_named_port_set_ids or rule.dst_named_port_set_ids
        or rule.not_src_named_port_set_ids or rule.not_dst_named_port_set_ids
    )
    icmp_name = "icmp" if fam == 4 else "ipv6-icmp"
    # Which `-p` variants to emit: multiport needs an explicit protocol, and Calico's ports mean tcp/udp/sctp.
    if rule.protocol is not None:
        proto = _proto(rule.protocol, fam)
        if rule.not_protocol is not None and _proto(rule.not_protocol, fam) == proto:
            return [], set()  # protocol X and not X: never matches
        protos: list[str | None] = [proto]
    elif has_ports:
        excluded = _proto(rule.not_protocol, fam) if rule.not_protocol is not None else None
        protos = [p for p in _PORT_PROTOS if p != excluded]
    elif rule.icmp_type is not None or rule.not_icmp_type is not None:
        protos = [icmp_name]
    else:
        protos = [None]
        if rule.not_protocol is not None:
            base.append(f"! -p {_proto(rule.not_protocol, fam)}")
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
    for flag, nets, not_nets, sets, not_sets, side in (
        ("-s", rule.src_nets, rule.not_src_nets, rule.src_ip_set_ids, rule.not_src_ip_set_ids, "src"),
        ("-d", rule.dst_nets, rule.not_dst_nets, rule.dst_ip_set_ids, rule.not_dst_ip_set_ids, "dst"),
    ):
        if nets:
            own = _nets(nets, fam)
            if not own:
                return [], set()
            alternatives = [[*alt, f"{flag} {n}"] for alt in alternatives for n in own]
        nn = _nets(not_nets, fam)
        if nn:
            base += _not_nets(flag, nn)
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
            out.append(Rule(" ".join([*head, *base, *port_base, *alt]), target))
    if follow is not None:
        out.append(follow)
    return out, refs


def _rules_chain(name: str, rules: tuple[ev.RenderedRule, ...], fam: int, profile: bool) -> Chain:
    out: list[Rule] = []
    refs: set[str] = set()
    for rule in rules:
        try:
            rl, rr = render_rule(rule, fam, name, profile)
        except (ValueError, TypeError):
            # Fail closed: an unrenderable rule ends the chain with a drop, never a silent skip.
            out.append(Rule("", "-j DROP"))
            break
        out.extend(rl)
        refs |= rr
    return Chain(name, tuple(out), frozenset(refs))


def policy_chains(policy: ev.PolicyUpdate, fam: int) -> list[Chain]:
    pid = policy.policy_id
    return [
        _rules_chain(policy_chain(pid, True), policy.inbound, fam, False),
        _rules_chain(policy_chain(pid, False), policy.outbound, fam, False),
    ]


def profile_chains(profile: ev.ProfileUpdate, fam: int) -> list[Chain]:
    return [
        _rules_chain(profile_chain(profile.profile_id, True), profile.inbound, fam, True),
        _rules_chain(profile_chain(profile.profile_id, False), profile.outbound, fam, True),
    ]


# --- endpoints ----------------------------------------------------------------------------------------


def _clear(bits: int) -> Rule:
    return Rule("", f"-j MARK --set-xmark 0x0/{bits:#x}")


def _endpoint_policy_rules(
    ep: ev.WorkloadEndpointUpdate | ev.HostEndpointUpdate | hepm.Policed,
    inbound: bool,
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
) -> list[Rule]:
    out: list[Rule] = []
    accepted = Rule(_ACCEPTED, "-j RETURN")
    first = True
    for tier in ep.tiers:
        pids = tier.ingress_policies if inbound else tier.egress_policies
        if not pids:
            continue  # no policy of this tier applies in this direction: the tier is skipped
        if not first:  # a Pass in the previous tier must not skip this one
            out.append(_clear(MARK_PASS))
        first = False
        for pid in pids:
            if pid not in known_policies:
                out.append(Rule(_NOT_PASSED, "-j DROP"))  # out-of-order reference: fail closed
                continue
            out.append(Rule(_NOT_PASSED, f"-j {policy_chain(pid, inbound)}"))
            out.append(accepted)
        if tier.default_action.lower() != "pass":
            out.append(Rule(_NOT_PASSED, "-j DROP"))
    for prof in ep.profile_ids:
        if prof not in known_profiles:
            out.append(Rule("", "-j DROP"))
            break
        out.append(Rule("", f"-j {profile_chain(prof, inbound)}"))
        out.append(accepted)
    out.append(Rule("", "-j DROP"))
    return out


def endpoint_chains(
    ep: ev.WorkloadEndpointUpdate,
    fam: int,
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
) -> list[Chain]:
    """cali-fw-<iface> (from the workload: anti-spoofing, then its egress policy) and cali-tw-<iface> (its
    ingress policy), each ending in a goto to a policy-group chain: the tier/policy/profile sequence of one
    direction, named by its content and shared by every endpoint with the same policies (as in the nftables
    backend), so a new endpoint writes a few rules instead of hundreds. A goto keeps RETURN semantics."""
    out_group = group_chain(_endpoint_policy_rules(ep, False, known_policies, known_profiles), False)
    in_group = group_chain(_endpoint_policy_rules(ep, True, known_policies, known_profiles), True)
    fw = [_clear(MARK_BOTH)]
    own = _nets([*(ep.ipv4_nets if fam == 4 else ep.ipv6_nets), *ep.allow_spoofed_source_prefixes], fam)
    if own:
        fw.append(Rule(" ".join(_not_nets("-s", own, plain_ok=True)), "-j DROP"))  # anti-spoofing
    else:
        fw.append(Rule("", "-j DROP"))  # no address of this family: nothing of it may leave
    fw.append(Rule("", f"-g {out_group.name}"))
    tw = [_clear(MARK_BOTH), Rule("", f"-g {in_group.name}")]
    return [Chain(fw_chain(ep.iface), tuple(fw)), Chain(tw_chain(ep.iface), tuple(tw)), out_group, in_group]


GROUP_PREFIXES = ("cali-pgi-", "cali-pgo-")


def endpoint_groups(model: dict[str, Chain], iface: str) -> tuple[str, ...]:
    """The policy groups an endpoint's rendered chains go to: the target of each one's last rule (`-g <group>`),
    read back from `model` rather than rendered again."""
    return tuple(model[c].rules[-1].target.removeprefix("-g ") for c in (fw_chain(iface), tw_chain(iface)))


def group_chain(rules: list[Rule], inbound: bool) -> Chain:
    prefix = GROUP_PREFIXES[0] if inbound else GROUP_PREFIXES[1]
    digest = _b64hash("\n".join(f"{x.match}\x00{x.target}" for x in rules), MAX_CHAIN - len(prefix))
    return Chain(prefix + digest.replace("-", "_"), tuple(rules))


DISPATCH_BUCKET_PREFIXES = ("cali-fwd-", "cali-twd-")


def dispatch_chains(ifaces: Iterable[str], prefixes: tuple[str, ...]) -> list[Chain]:
    """Interface -> endpoint chain (goto, so the endpoint's RETURN goes back to our caller); unknown: drop.

    Two levels, so adding an endpoint rewrites a handful of rules rather than one rule per endpoint: the top
    chain goes by the first character after the prefix (`-i cali7+ -g cali-fwd-cali7`; Calico's names are the
    prefix + hex, so up to 16 buckets), each bucket holds its interfaces' exact matches and ends in DROP."""
    buckets: dict[str, list[str]] = {}
    direct: list[str] = []  # a name no longer than its prefix has no bucket character: matched at the top
    by_length = sorted(prefixes, key=len, reverse=True)
    for name in sorted(set(ifaces)):
        prefix = next((p for p in by_length if name.startswith(p)), "")
        if len(name) > len(prefix):
            buckets.setdefault(name[: len(prefix) + 1], []).append(name)
        else:
            direct.append(name)
    out = []
    for flag, bucket_prefix, top, chain_of in (
        ("-i", DISPATCH_BUCKET_PREFIXES[0], FROM_WL, fw_chain),
        ("-o", DISPATCH_BUCKET_PREFIXES[1], TO_WL, tw_chain),
    ):
        rules = [Rule(f"{flag} {n}", f"-g {chain_of(n)}") for n in direct]
        for key, names in sorted(buckets.items()):
            bucket = _chain_id(bucket_prefix, key)
            rules.append(Rule(f"{flag} {key}+", f"-g {bucket}"))
            out.append(Chain(bucket, (*(Rule(f"{flag} {n}", f"-g {chain_of(n)}") for n in names),
                                      Rule("", "-j DROP"))))
        rules += [Rule(f"{flag} {p}+", "-j DROP") for p in prefixes]
        out.append(Chain(top, tuple(rules)))
    return out


def base_chains(
    fam: int, prefixes: tuple[str, ...], endpoint_to_host: str, metadata: tuple[str, int] | None = None
) -> list[Chain]:
    """The fixed chains; they depend only on config (InterfacePrefix, DefaultEndpointToHostAction, metadata)."""
    ct = "-m conntrack --ctstate"
    forward = [Rule(f"{ct} RELATED,ESTABLISHED", "-j ACCEPT")]
    forward += [Rule(f"-i {p}+ {ct} INVALID", "-j DROP") for p in prefixes]
    forward += [Rule(f"-o {p}+ {ct} INVALID", "-j DROP") for p in prefixes]
    forward.append(_clear(MARK_BOTH))  # only policy may set our bits
    forward.append(Rule("", f"-j {FROM_HEP_FWD}"))
    forward += [Rule(f"-i {p}+", f"-j {FROM_WL}") for p in prefixes]
    forward += [Rule(f"-o {p}+", f"-j {TO_WL}") for p in prefixes]
    forward.append(Rule("", f"-j {TO_HEP_FWD}"))
    forward.append(Rule(_ACCEPTED, "-j ACCEPT"))
    dhcp = "67,68" if fam == 4 else "546,547"
    to_host = [
        Rule(f"{ct} RELATED,ESTABLISHED", "-j ACCEPT"),
        Rule(f"{ct} INVALID", "-j DROP"),
    ]
    if metadata and fam == 4:  # OpenStack metadata (DNATed in nat PREROUTING) before the egress policy
        to_host.append(Rule(f"-p tcp -d {metadata[0]}/32 --dport {metadata[1]}", "-j ACCEPT"))
    to_host += [
        Rule(f"-p udp -m multiport --dports {dhcp}", "-j ACCEPT"),  # DHCP
        Rule("-p udp --dport 53", "-j ACCEPT"),  # DNS
        Rule("-p tcp --dport 53", "-j ACCEPT"),
    ]
    if fam == 6:
        to_host += [Rule(f"-p ipv6-icmp -m icmp6 --icmpv6-type {t}", "-j ACCEPT") for t in (133, 134, 135, 136)]
    to_host += [_clear(MARK_BOTH), Rule("", f"-j {FROM_WL}")]  # egress policy; unknown interfaces drop there
    action = {"accept": "-j ACCEPT", "return": "-j RETURN"}.get(endpoint_to_host.lower(), "-j DROP")
    to_host.append(Rule("", action))
    return [
        Chain(FORWARD, tuple(forward)),
        Chain(INPUT, (*(Rule(f"-i {p}+", f"-j {WL_TO_HOST}") for p in prefixes), Rule("", f"-j {FROM_HEP}"))),
        Chain(OUTPUT, (*(Rule(f"-o {p}+", "-j RETURN") for p in prefixes), Rule("", f"-j {TO_HEP}"))),
        Chain(WL_TO_HOST, tuple(to_host)),
    ]


# --- host endpoints -----------------------------------------------------------------------------------

FROM_HEP = "cali-from-host-endpoint"
TO_HEP = "cali-to-host-endpoint"
FROM_HEP_FWD = "cali-from-hep-forward"
TO_HEP_FWD = "cali-to-hep-forward"
FAILSAFE_IN = "cali-failsafe-in"
FAILSAFE_OUT = "cali-failsafe-out"
HEP_FIXED = (FROM_HEP, TO_HEP, FROM_HEP_FWD, TO_HEP_FWD, FAILSAFE_IN, FAILSAFE_OUT)
HEP_KINDS = ("cali-fh-", "cali-th-", "cali-fhfw-", "cali-thfw-")
NAT_PREROUTING = "cali-PREROUTING"


def hep_chain(kind: str, iface: str) -> str:
    """kind: one of HEP_KINDS. "/" cannot occur in an interface name, so the wildcard's "/all" cannot collide."""
    return kind + "/all" if iface == hepm.WILDCARD else _chain_id(kind, iface)


def is_hep_chain(name: str) -> bool:
    return name in HEP_FIXED or name.startswith(HEP_KINDS)


def failsafe_rules(failsafes: Iterable[FailsafePort], fam: int, inbound: bool) -> list[Rule]:
    flag = "-s" if inbound else "-d"
    out = []
    for proto, net, ports in hepm.grouped_ports(failsafes, fam):
        where = f" {flag} {net}" if net is not None else ""
        out += [Rule(f"-p {proto}{where} -m multiport --dports {c}", "-j ACCEPT")
                for c in port_chunks((p, p) for p in ports)]
    return out


def _hep_policy_chain(
    name: str,
    policed: hepm.Policed,
    inbound: bool,
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
    head: tuple[Rule, ...] = (),
    allow_if_none: bool = False,
) -> Chain:
    if allow_if_none and not hepm.has_direction(policed.tiers, inbound):
        return Chain(name, (Rule("", "-j RETURN"),))  # forwarded, no applyOnForward policy: left alone
    rules = _endpoint_policy_rules(policed, inbound, known_policies, known_profiles)
    return Chain(name, (*head, _clear(MARK_BOTH), *rules))


def hep_dispatch(name: str, flag: str, prefixes: tuple[str, ...], heps: list[ev.HostEndpointUpdate], kind: str,
                 head: tuple[Rule, ...] = ()) -> Chain:
    """Dispatch to per-interface host endpoint chains of `kind` (after `head`): workload interfaces and loopback
    return first (host endpoint rules never police them), then each endpoint's interface, "*" catching the rest."""
    rules = [*head, *(Rule(f"{flag} {p}+", "-j RETURN") for p in prefixes), Rule(f"{flag} lo", "-j RETURN")]
    for hep in heps:
        iface = hep.iface or ""
        target = f"-g {hep_chain(kind, iface)}"
        rules.append(Rule("", target) if iface == hepm.WILDCARD else Rule(f"{flag} {iface}", target))
    return Chain(name, tuple(rules))


def host_endpoint_chains(
    heps: list[ev.HostEndpointUpdate],
    fam: int,
    prefixes: tuple[str, ...],
    fs_in: tuple[FailsafePort, ...],
    fs_out: tuple[FailsafePort, ...],
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
    skip_allowed: bool = False,
) -> list[Chain]:
    """Every host endpoint chain of one family, dispatch and failsafe chains included. `skip_allowed` (set when
    untracked / pre-DNAT stages exist, which clear the bit on the way in): a packet those stages allowed
    returns at once from every endpoint chain, skipping normal policy."""
    ct = "-m conntrack --ctstate"
    skip = (Rule(f"-m mark --mark {MARK_HEP_ALLOWED:#x}/{MARK_HEP_ALLOWED:#x}", "-j RETURN"),) if skip_allowed else ()
    chains = [
        Chain(FAILSAFE_IN, tuple(failsafe_rules(fs_in, fam, True))),
        Chain(FAILSAFE_OUT, tuple(failsafe_rules(fs_out, fam, False))),
    ]
    for dname, kind, flag in (
        (FROM_HEP, "cali-fh-", "-i"),
        (TO_HEP, "cali-th-", "-o"),
        (FROM_HEP_FWD, "cali-fhfw-", "-i"),
        (TO_HEP_FWD, "cali-thfw-", "-o"),
    ):
        chains.append(hep_dispatch(dname, flag, prefixes, heps, kind))
    for hep in heps:
        iface = hep.iface or ""
        normal = hepm.policed_normal(hep)
        fwd = hepm.policed_forward(hep)
        conn = (Rule(f"{ct} RELATED,ESTABLISHED", "-j ACCEPT"), Rule(f"{ct} INVALID", "-j DROP"))
        invalid = (Rule(f"{ct} INVALID", "-j DROP"),)
        chains += [
            _hep_policy_chain(hep_chain("cali-fh-", iface), normal, True, known_policies, known_profiles,
                              head=(*skip, *conn, Rule("", f"-j {FAILSAFE_IN}"))),
            _hep_policy_chain(hep_chain("cali-th-", iface), normal, False, known_policies, known_profiles,
                              head=(*skip, *conn, Rule("", f"-j {FAILSAFE_OUT}"))),
            _hep_policy_chain(hep_chain("cali-fhfw-", iface), fwd, True, known_policies, known_profiles,
                              head=(*skip, *invalid), allow_if_none=True),
            _hep_policy_chain(hep_chain("cali-thfw-", iface), fwd, False, known_policies, known_profiles,
                              head=(*skip, *invalid), allow_if_none=True),
        ]
    return chains


def state_host_endpoint_chains(state: DesiredState, fam: int) -> list[Chain]:
    heps = hepm.active_host_endpoints(state)
    return host_endpoint_chains(
        heps,
        fam,
        state.config.interface_prefixes,
        state.config.failsafe_inbound,
        state.config.failsafe_outbound,
        state.policies,
        state.profiles,
        skip_allowed=bool(hepm.with_untracked(heps) or hepm.with_pre_dnat(heps)),
    )


def nat_chain(metadata: tuple[str, int], prefixes: tuple[str, ...]) -> Chain:
    """nat cali-PREROUTING: the OpenStack metadata DNAT from each workload interface prefix."""
    addr, port = metadata
    rules = tuple(
        Rule(f"-i {p}+ -d {hepm.METADATA_IP}/32 -p tcp --dport {hepm.METADATA_PORT}",
             f"-j DNAT --to-destination {addr}:{port}")
        for p in prefixes
    )
    return Chain(NAT_PREROUTING, rules)


def nat_restore_text(metadata: tuple[str, int], prefixes: tuple[str, ...], have_jump: bool) -> str:
    """IPv4 `*nat` section: cali-PREROUTING (re)filled with the metadata DNAT; the PREROUTING jump if missing."""
    chain = nat_chain(metadata, prefixes)
    lines = ["*nat", f":{NAT_PREROUTING} - [0:0]"]
    if not have_jump:
        h = jump_hash("PREROUTING", NAT_PREROUTING)
        lines.append(f'-I PREROUTING 1 -m comment --comment "cali:{h}" -j {NAT_PREROUTING}')
    lines += [rule_line(NAT_PREROUTING, r, h) for r, h in zip(chain.rules, chain.hashes, strict=True)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nat_in_place(save_text: str, chain: Chain) -> bool:
    """Does `iptables-save -t nat` hold `chain` exactly (by rule hashes) and the PREROUTING jump to it?"""
    return nat_has_jump(save_text) and parse_save(save_text).chains.get(chain.name) == chain.hashes


def nat_has_jump(save_text: str) -> bool:
    """Does `iptables-save -t nat` show our PREROUTING jump?"""
    return any(
        line.startswith("-A PREROUTING ") and line.endswith(f"-j {NAT_PREROUTING}") for line in save_text.splitlines()
    )


# --- whole models -------------------------------------------------------------------------------------


def fail_closed_chains(
    fam: int, prefixes: tuple[str, ...] = ("cali",), endpoint_to_host: str = "Drop",
    metadata: tuple[str, int] | None = None,
) -> list[Chain]:
    """Start of day before any sync: base chains and dispatch that drops every workload interface (host
    interfaces are left alone until host endpoints are known)."""
    return (
        base_chains(fam, prefixes, endpoint_to_host, metadata)
        + host_endpoint_chains([], fam, prefixes, (), (), {}, {})
        + dispatch_chains((), prefixes)
    )


def render_family(state: DesiredState, fam: int) -> dict[str, Chain]:
    """Every chain of one family for a desired state (start of day, or a full reapply after drift)."""
    cfg = state.config
    chains = base_chains(fam, cfg.interface_prefixes, cfg.endpoint_to_host_action, cfg.metadata)
    chains += state_host_endpoint_chains(state, fam)
    chains += dispatch_chains((ep.iface for ep in state.endpoints.values()), state.config.interface_prefixes)
    for pid in sorted(state.policies):
        chains += policy_chains(state.policies[pid], fam)
    for prof in sorted(state.profiles):
        chains += profile_chains(state.profiles[prof], fam)
    for eid in sorted(state.endpoints):
        chains += endpoint_chains(state.endpoints[eid], fam, state.policies, state.profiles)
    return {c.name: c for c in chains}


def render_ipsets(state: DesiredState, models: Iterable[dict[str, Chain]]) -> dict[str, ips.IpsetSpec]:
    """Kernel sets for the state, plus empty ones for names rules use before their members exist."""
    out: dict[str, ips.IpsetSpec] = {}
    for sid in sorted(state.ipsets):
        for spec in ips.specs_for(sid, state.ipsets[sid]):
            out[spec.name] = spec
    for model in models:
        for chain in model.values():
            for ref in chain.set_refs:
                out.setdefault(ref, ips.empty_spec(ref))
    return out


# --- text ---------------------------------------------------------------------------------------------


def rule_line(chain: str, rule: Rule, h: str) -> str:
    parts = ["-A", chain]
    if rule.match:
        parts.append(rule.match)
    parts += ["-m comment --comment", f'"cali:{h}"', rule.target]
    return " ".join(parts)


def restore_text(
    write: Iterable[Chain], delete: Iterable[str] = (), jumps: Iterable[tuple[str, str]] = ()
) -> str:
    """One `iptables-restore --noflush` transaction for the filter table: each written chain is declared
    (created, or flushed when it exists) and refilled; deleted chains are flushed, then removed last, after
    every rule that jumped to them is gone; missing jumps from built-in chains are inserted at the top."""
    write = list(write)
    delete = sorted(set(delete) - {c.name for c in write})
    if not write and not delete and not jumps:
        return ""
    lines = ["*filter"]
    lines += [f":{c.name} - [0:0]" for c in write]
    lines += [f":{name} - [0:0]" for name in delete]
    for builtin, target in jumps:
        lines.append(f'-I {builtin} 1 -m comment --comment "cali:{jump_hash(builtin, target)}" -j {target}')
    for c in write:
        lines += [rule_line(c.name, r, h) for r, h in zip(c.rules, c.hashes, strict=True)]
    lines += [f"-X {name}" for name in delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


_COMMENT = re.compile(r'--comment "?cali:([A-Za-z0-9_\-]+)"?')


@dataclass(slots=True)
class SavedTable:
    """What read-back compares: our chains' comment hashes in order, and which built-in jumps exist."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jumps: set[tuple[str, str]] = field(default_factory=set)


def parse_save(text: str) -> SavedTable:
    """`iptables-save -t filter` output -> our chains (`cali-` only) and our jumps from built-in chains."""
    saved = SavedTable()
    hashes: dict[str, list[str]] = {}
    builtins = {b for b, _ in BUILTIN_JUMPS}
    for line in text.splitlines():
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if name.startswith(CHAIN_PREFIX):
                hashes.setdefault(name, [])
        elif line.startswith("-A "):
            name = line.split(" ", 2)[1]
            if name.startswith(CHAIN_PREFIX):
                m = _COMMENT.search(line)
                hashes.setdefault(name, []).append(m.group(1) if m else "?")
            elif name in builtins:
                for builtin, target in BUILTIN_JUMPS:
                    if builtin == name and line.endswith(f"-j {target}"):
                        saved.jumps.add((builtin, target))
    saved.chains = {k: tuple(v) for k, v in hashes.items()}
    return saved

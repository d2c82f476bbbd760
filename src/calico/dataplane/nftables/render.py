"""Render desired dataplane state into Calico's one nftables table, `table inet calico` (IPv4 and IPv6).

In: a `DesiredState` (or single policies / profiles / endpoints / IP sets from it). Out: a `TableModel`
(sets, verdict maps and chains as plain text rules) and, from that, `nft -f` text. Pure: no I/O.

Layout (all names fixed, so read-back and incremental updates can address them):

    forward (hook forward)  ct established/related accept; invalid from/to a workload drop; jump hep-fwd-in;
                            iifname <prefix>* jump from-wl-dispatch; oifname <prefix>* jump to-wl-dispatch;
                            jump hep-fwd-out
    input   (hook input)    iifname <prefix>* jump wl-to-host; jump hep-in
    output  (hook output)   host -> local workload traffic is allowed (as in Calico); jump hep-out
    nat-prerouting          (only with OpenStack metadata) workload -> 169.254.169.254:80 dnat to MetadataAddr
    hep-in / hep-out        host endpoint dispatch (workload interfaces and lo return first): iifname/oifname
    hep-fwd-in/-out         "<iface>" goto fh-/th-/fhf-/thf-<iface>; then the "*" endpoint's chain, if any
    fh-/th-<iface>          to / from the host: ct, failsafe-in / failsafe-out, tiers, profiles, drop
    fhf-/thf-<iface>        forwarded in / out: applyOnForward tiers, drop (return when none apply)
    raw-prerouting/-output  (only with doNotTrack host endpoint policy) hooks at priority raw: clear
                            MARK_HEP_ALLOWED, failsafes, then ui-/uo-<iface>: untracked tiers; Allow ->
                            untracked-allow (set MARK_HEP_ALLOWED, notrack, accept); Deny drops; no match goes on
    pre-dnat (hook prerouting priority dstnat - 10; only with preDNAT policy) ct established accept,
                            failsafes, pd-<iface>: preDNAT tiers; Allow -> pre-dnat-allow (set the mark, accept)
                            fh-/th-/fhf-/thf- chains then return at once for a packet carrying MARK_HEP_ALLOWED:
                            allowed by untracked or pre-DNAT policy skips normal host endpoint policy (Calico's)
    from-wl-dispatch        iifname vmap @fw-dispatch  (iface : goto fw-<iface>); drop   <- fail closed
    to-wl-dispatch          oifname vmap @tw-dispatch  (iface : goto tw-<iface>); drop
    wl-to-host              ct, DHCP, DNS, IPv6 ND accepted first; jump from-wl-dispatch (egress policy);
                            then DefaultEndpointToHostAction (drop / accept / return)
    fw-<iface> / tw-<iface> per endpoint: clear our mark bits, anti-spoof (fw only), tiers, profiles, drop
    pi-<policy> / po-<policy>  a policy's inbound / outbound rules; pri-<id> / pro-<id> a profile's
    s4-<id> s6-<id>         NET IP sets per family (flags interval); n4-<id> n6-<id> named-port sets

Verdicts inside policy chains use two mark bits, because an `accept` would end the base chain and skip the
other endpoint's chain (egress of the sender and ingress of the receiver must both run in `forward`):
Allow sets MARK_ACCEPT and returns, Pass sets MARK_PASS and returns, Deny drops, Log logs and continues.
The endpoint chain returns (allowed) as soon as MARK_ACCEPT is set, skips the rest of a tier once MARK_PASS
is set, drops at the end of a tier whose policies applied but did not match (defaultAction Deny), then tries
profiles, then drops. Endpoint chains are entered with `goto`, so their `return` goes back to the base chain.

Anti-spoofing is an explicit per-endpoint source check (`ip saddr != { own /32s, allowSpoofedSourcePrefixes }
drop`) rather than `fib saddr . iif oif missing`: it does not depend on the host's routes being in place yet.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import FailsafePort
from calico.dataplane.state import DesiredState, IPSet

TABLE = "calico"
FAMILY = "inet"
MARK_ACCEPT = 0x00010000
MARK_PASS = 0x00020000
MARK_CLEAR = 0xFFFFFFFF & ~(MARK_ACCEPT | MARK_PASS)
MARK_HEP_ALLOWED = 0x00040000  # allowed by untracked / pre-DNAT policy: normal host endpoint policy is skipped

FW_MAP = "fw-dispatch"
TW_MAP = "tw-dispatch"

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MAX_NAME = 200  # nft allows 256; leave room for prefixes


@dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str
    interval: bool
    elements: frozenset[str]


@dataclass(frozen=True, slots=True)
class NftChain:
    name: str
    rules: tuple[str, ...]
    hook: str | None = None  # base chain header, e.g. "type filter hook forward priority filter; policy accept;"
    set_refs: frozenset[str] = frozenset()  # named sets its rules use (sets must outlive the rules)


@dataclass(slots=True)
class TableModel:
    sets: dict[str, NftSet] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)  # map name -> {ifname: verdict}
    chains: dict[str, NftChain] = field(default_factory=dict)

    def digest(self) -> str:
        """Content hash of the whole model: equal models render to equal text."""
        return hashlib.sha256(render_text(self).encode()).hexdigest()[:16]


# --- names --------------------------------------------------------------------------------------------


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@functools.lru_cache(maxsize=1 << 16)
def rule_tag(rule: str) -> str:
    """The comment each rule carries into the kernel: a hash of its text. nft prints rules back in its own
    spelling, but the comment verbatim, so read-back compares every rule of every chain by these."""
    return "cali:" + hashlib.blake2b(rule.encode(), digest_size=8).hexdigest()


def tagged(rule: str) -> str:
    return f'{rule} comment "{rule_tag(rule)}"'


def _ident(*parts: str) -> str:
    """A readable nft identifier from name parts, or a hash when a part is unsafe or the result too long."""
    if all(_SAFE.match(p) for p in parts):
        ident = "/".join(parts)
        if len(ident) <= _MAX_NAME:
            return ident
    return "h" + _short_hash("\x00".join(parts))


def policy_chain(pid: ev.PolicyID, inbound: bool) -> str:
    parts = (pid.tier, pid.namespace, pid.name) if pid.namespace is not None else (pid.tier, pid.name)
    return ("pi-" if inbound else "po-") + _ident(*parts)


def profile_chain(profile_id: str, inbound: bool) -> str:
    return ("pri-" if inbound else "pro-") + _ident(profile_id)


def set_name(set_id: str, family: int, named_port: bool = False) -> str:
    return f"{'n' if named_port else 's'}{family}-{_ident(set_id)}"


def fw_chain(iface: str) -> str:
    return f"fw-{iface}"


def tw_chain(iface: str) -> str:
    return f"tw-{iface}"


def _q(text: str) -> str:
    """Quote a string for nft (our strings never contain quotes; strip them defensively)."""
    return '"' + text.replace('"', "").replace("\\", "") + '"'


# --- IP sets ------------------------------------------------------------------------------------------

_SET_TYPES = {
    ("s", 4): ("ipv4_addr", True),
    ("s", 6): ("ipv6_addr", True),
    ("n", 4): ("ipv4_addr . inet_proto . inet_service", False),
    ("n", 6): ("ipv6_addr . inet_proto . inet_service", False),
}


def empty_set_for_name(name: str) -> NftSet:
    """The empty set a rule may name before (or after) its members exist; its type follows from the name."""
    kind, fam = name[0], int(name[1])
    typ, interval = _SET_TYPES[(kind, fam)]
    return NftSet(name, typ, interval, frozenset())


@functools.lru_cache(maxsize=1 << 17)
def host_element(member: str) -> tuple[int, str] | None:
    """(family, element) when `member` is one address ("198.18.0.1", "198.18.0.1/32", "fd00::1/128"), else
    None. Cached: the same endpoint addresses are looked at again on every change of the sets they are in."""
    addr, _, plen = member.strip().partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if plen and plen != str(ip.max_prefixlen):
        return None
    return ip.version, str(ip)


def _collapse(nets: Iterable[str], family: int) -> list[str]:
    """Canonical, non-overlapping CIDRs of one family (nft rejects overlapping interval elements).

    A set of single addresses (the usual selector set) is kept one element per address, never merged into
    covering prefixes, so that later deltas map one member to one element (see diff.Planner)."""
    nets = list(nets)
    hosts = [host_element(n) for n in nets]
    if all(h is not None for h in hosts):
        return sorted({h[1] for h in hosts if h is not None and h[0] == family})
    parsed = []
    for n in nets:
        try:
            net = ipaddress.ip_network(n.strip(), strict=False)
        except ValueError:
            continue  # malformed member: skip it rather than fail the whole transaction
        if net.version == family:
            parsed.append(net)
    out = []
    for net in ipaddress.collapse_addresses(parsed):  # type: ignore[type-var]
        out.append(str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net))
    return out


def hosts_only(s: NftSet) -> bool:
    """True when every element of an address set is a single address (no prefix)."""
    return s.name[0] == "s" and not any("/" in e for e in s.elements)


def canonical_host(member: str) -> tuple[int, str] | None:
    """`host_element(member)` when `member` is spelled the graph's way, "<canonical address>/32" or "/128":
    one spelling per element, so a removed member's element is gone for sure."""
    h = host_element(member)
    if h is None or member != f"{h[1]}/{32 if h[0] == 4 else 128}":
        return None
    return h


def _named_port_element(member: str, family: int) -> str | None:
    """ "198.18.0.1,tcp:8080" -> "198.18.0.1 . tcp . 8080" (None when malformed or of the other family)."""
    try:
        addr, proto_port = member.split(",", 1)
        proto, port = proto_port.split(":", 1)
        ip = ipaddress.ip_address(addr.strip())
        port_n = int(port)
    except ValueError:
        return None
    if ip.version != family or not 0 <= port_n <= 65535:
        return None
    proto = proto.strip().lower()
    if proto not in ("tcp", "udp", "sctp"):
        return None
    return f"{ip} . {proto} . {port_n}"


def ipset_sets(set_id: str, ipset: IPSet) -> list[NftSet]:
    """Both per-family nft sets for one Calico IP set (both always exist, so rules never dangle)."""
    out = []
    for fam in (4, 6):
        if ipset.set_type is ev.IPSetType.NET:
            name = set_name(set_id, fam)
            elements = frozenset(_collapse(ipset.members, fam))
        else:
            name = set_name(set_id, fam, named_port=True)
            elements = frozenset(e for m in ipset.members if (e := _named_port_element(m, fam)) is not None)
        base = empty_set_for_name(name)
        out.append(NftSet(name, base.type, base.interval, elements))
    return out


def ipset_set_names(set_id: str, ipset: IPSet) -> list[str]:
    named = ipset.set_type is ev.IPSetType.IP_PORT
    return [set_name(set_id, 4, named), set_name(set_id, 6, named)]


# --- rules --------------------------------------------------------------------------------------------

_PROTO_NAMES = {
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp",
    "icmpv6": "ipv6-icmp",
    "sctp": "sctp",
    "udplite": "udplite",
}


def _proto(p: str | int) -> str:
    if isinstance(p, int) or str(p).isdigit():
        return str(int(p))
    name = _PROTO_NAMES.get(str(p).lower())
    if name is None:
        raise ValueError(f"unknown protocol {p!r}")
    return name


def _ports(ranges: Iterable[ev.PortRange]) -> str:
    items = [str(a) if a == b else f"{a}-{b}" for a, b in sorted(set(ranges))]
    return "{ " + ", ".join(items) + " }"


def _nets_expr(nets: list[str]) -> str:
    return "{ " + ", ".join(nets) + " }"


def _families(rule: ev.RenderedRule) -> list[int | None]:
    """Which address families this rule needs a variant for; [None] means one family-agnostic rule."""
    fams = {4, 6}
    specific = False
    if rule.ip_version in (4, 6):
        fams &= {rule.ip_version}
    proto = str(rule.protocol).lower() if rule.protocol is not None else None
    if proto in ("icmp", "1"):
        fams &= {4}
    elif proto in ("icmpv6", "58"):
        fams &= {6}
    for nets in (rule.src_nets, rule.dst_nets):
        if nets:
            specific = True
            fams &= {ipaddress.ip_network(n, strict=False).version for n in nets}
    if (
        rule.not_src_nets
        or rule.not_dst_nets
        or rule.src_ip_set_ids
        or rule.not_src_ip_set_ids
        or rule.dst_ip_set_ids
        or rule.not_dst_ip_set_ids
        or rule.src_named_port_set_ids
        or rule.not_src_named_port_set_ids
        or rule.dst_named_port_set_ids
        or rule.not_dst_named_port_set_ids
        or rule.icmp_type is not None
        or rule.not_icmp_type is not None
        or rule.ip_version in (4, 6)
    ):
        specific = True
    if not specific and fams == {4, 6}:
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
        return f"log prefix {_q(f'calico-{chain[:20]} ')}"
    return None


def render_rule(rule: ev.RenderedRule, chain: str, profile: bool = False) -> tuple[list[str], set[str]]:
    """One Calico rule -> nft rule lines (one per address family and per OR-ed port alternative) and the
    named sets they use. Raises ValueError for what cannot be rendered (the caller fails closed)."""
    verdict = _action(rule, chain, profile)
    if verdict is None:
        raise ValueError(f"unknown action {rule.action!r}")
    lines: list[str] = []
    refs: set[str] = set()
    for fam in _families(rule):
        m: list[str] = []
        ip = {4: "ip", 6: "ip6", None: ""}[fam]
        if fam is not None:
            m.append(f"meta nfproto ipv{fam}")
        if rule.protocol is not None:
            m.append(f"meta l4proto {_proto(rule.protocol)}")
        if rule.not_protocol is not None:
            m.append(f"meta l4proto != {_proto(rule.not_protocol)}")
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
                    m.append(f"{ip} {direction} {_nets_expr(_collapse(nets, fam))}")
                nn = _collapse(not_nets, fam)
                if nn:
                    m.append(f"{ip} {direction} != {_nets_expr(nn)}")
                for sid in sets:
                    name = set_name(sid, fam)
                    refs.add(name)
                    m.append(f"{ip} {direction} @{name}")
                for sid in not_sets:
                    name = set_name(sid, fam)
                    refs.add(name)
                    m.append(f"{ip} {direction} != @{name}")
        has_ports = bool(
            rule.src_ports
            or rule.dst_ports
            or rule.not_src_ports
            or rule.not_dst_ports
            or rule.src_named_port_set_ids
            or rule.dst_named_port_set_ids
            or rule.not_src_named_port_set_ids
            or rule.not_dst_named_port_set_ids
        )
        if has_ports and rule.protocol is None:
            # Calico only allows ports with TCP/UDP/SCTP; without a protocol, match any of those.
            m.append("meta l4proto { tcp, udp, sctp }")
        for direction, addr, not_ports, not_named in (
            ("sport", "saddr", rule.not_src_ports, rule.not_src_named_port_set_ids),
            ("dport", "daddr", rule.not_dst_ports, rule.not_dst_named_port_set_ids),
        ):
            if not_ports:
                m.append(f"th {direction} != {_ports(not_ports)}")
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
                options.append(f"th {direction} {_ports(ports)}")
            for sid in named:
                name = set_name(sid, fam or 4, named_port=True)
                refs.add(name)
                options.append(f"{ip} {addr} . meta l4proto . th {direction} @{name}")
            if options:
                alternatives = [[*alt, o] for alt in alternatives for o in options]
        for alt in alternatives:
            lines.append(" ".join([*m, *alt, verdict]))
    return lines, refs


def _rules_chain(name: str, rules: tuple[ev.RenderedRule, ...], profile: bool) -> NftChain:
    lines: list[str] = []
    refs: set[str] = set()
    for rule in rules:
        try:
            rl, rr = render_rule(rule, name, profile)
        except (ValueError, TypeError):
            # Fail closed: an unrenderable rule ends the chain with a drop, never a silent skip.
            lines.append(f"drop comment {_q('unrenderable rule ' + rule.rule_id[:40])}")
            break
        lines.extend(rl)
        refs |= rr
    return NftChain(name, tuple(lines), set_refs=frozenset(refs))


def policy_chains(policy: ev.PolicyUpdate) -> list[NftChain]:
    pid = policy.policy_id
    return [
        _rules_chain(policy_chain(pid, True), policy.inbound, False),
        _rules_chain(policy_chain(pid, False), policy.outbound, False),
    ]


def profile_chains(profile: ev.ProfileUpdate) -> list[NftChain]:
    return [
        _rules_chain(profile_chain(profile.profile_id, True), profile.inbound, True),
        _rules_chain(profile_chain(profile.profile_id, False), profile.outbound, True),
    ]


# --- endpoints ----------------------------------------------------------------------------------------


def _endpoint_policy_rules(
    ep: ev.WorkloadEndpointUpdate | ev.HostEndpointUpdate | hepm.Policed,
    inbound: bool,
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
) -> list[str]:
    accepted = f"meta mark & {MARK_ACCEPT:#010x} != 0 return"
    not_passed = f"meta mark & {MARK_PASS:#010x} == 0"
    lines: list[str] = []
    first = True
    for tier in ep.tiers:
        pids = tier.ingress_policies if inbound else tier.egress_policies
        if not pids:
            continue  # no policy of this tier applies in this direction: the tier is skipped
        if not first:  # a Pass in the previous tier must not skip this one (the chain start clears the rest)
            lines.append(f"meta mark set meta mark & {MARK_CLEAR:#010x}")
        first = False
        for pid in pids:
            if pid not in known_policies:
                # Out-of-order reference: fail closed until the policy arrives (state marks us dirty then).
                lines.append(f"{not_passed} drop")
                continue
            lines.append(f"{not_passed} jump {policy_chain(pid, inbound)}")
            lines.append(accepted)
        if tier.default_action.lower() != "pass":
            lines.append(f"{not_passed} drop")
    for prof in ep.profile_ids:
        if prof not in known_profiles:
            lines.append("drop")
            break
        lines.append(f"jump {profile_chain(prof, inbound)}")
        lines.append(accepted)
    lines.append("drop")
    return lines


def _own_nets(ep: ev.WorkloadEndpointUpdate, fam: int) -> list[str]:
    nets = ep.ipv4_nets if fam == 4 else ep.ipv6_nets
    return _collapse([*nets, *ep.allow_spoofed_source_prefixes], fam)


def endpoint_chains(
    ep: ev.WorkloadEndpointUpdate,
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
) -> list[NftChain]:
    """fw-<iface> (traffic from the workload: anti-spoofing, then its egress policy) and tw-<iface> (its ingress
    policy), each ending in a `goto` to a policy-group chain.

    A policy group is the rendered tier/policy/profile sequence for one direction, named by its content, so every
    endpoint with the same ordered policies shares one chain. Adding an endpoint then adds two short chains and
    two map entries instead of copying hundreds of jumps, which keeps the table (and nft's per-transaction cost,
    which grows with the table) small. The group's `return`/`drop` verdicts act exactly as if inlined: `goto`
    does not push a return address."""
    clear = f"meta mark set meta mark & {MARK_CLEAR:#010x}"
    groups = [_group_chain(_endpoint_policy_rules(ep, inbound, known_policies, known_profiles), inbound)
              for inbound in (False, True)]
    fw = [clear]
    for fam, ip in ((4, "ip"), (6, "ip6")):
        own = _own_nets(ep, fam)
        if own:
            fw.append(f"meta nfproto ipv{fam} {ip} saddr != {_nets_expr(own)} drop")
        else:
            fw.append(f"meta nfproto ipv{fam} drop")
    fw.append(f"goto {groups[0].name}")
    tw = [clear, f"goto {groups[1].name}"]
    return [NftChain(fw_chain(ep.iface), tuple(fw)), NftChain(tw_chain(ep.iface), tuple(tw)), *groups]


def _group_chain(lines: list[str], inbound: bool) -> NftChain:
    return NftChain(f"pg{'i' if inbound else 'o'}-{_short_hash(chr(10).join(lines))}", tuple(lines))


# --- the whole table ----------------------------------------------------------------------------------


def base_chains(
    prefixes: tuple[str, ...], endpoint_to_host: str, metadata: tuple[str, int] | None = None
) -> list[NftChain]:
    """The fixed chains; they depend only on config (InterfacePrefix, DefaultEndpointToHostAction, metadata)."""
    pats = [_q(p + "*") for p in prefixes]
    forward = ["ct state established,related accept"]
    forward += [f"iifname {p} ct state invalid drop" for p in pats]
    forward += [f"oifname {p} ct state invalid drop" for p in pats]
    forward.append(f"jump {HEP_FWD_IN}")
    forward += [f"iifname {p} jump from-wl-dispatch" for p in pats]
    forward += [f"oifname {p} jump to-wl-dispatch" for p in pats]
    forward.append(f"jump {HEP_FWD_OUT}")
    to_host_action = {"accept": "accept", "return": "return"}.get(endpoint_to_host.lower(), "drop")
    # OpenStack metadata (already DNATed in prerouting) is allowed before the workload's egress policy.
    meta = [f"ip daddr {metadata[0]} tcp dport {metadata[1]} accept"] if metadata else []
    wl_to_host = [
        "ct state established,related accept",
        "ct state invalid drop",
        *meta,
        "udp dport { 67, 68 } accept",  # DHCP
        "meta l4proto { tcp, udp } th dport 53 accept",  # DNS
        "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept",
        "jump from-wl-dispatch",  # the endpoint's egress policy; unknown interfaces drop there
        to_host_action,
    ]
    chains = [
        NftChain("forward", tuple(forward), hook="type filter hook forward priority filter; policy accept;"),
        NftChain(
            "input",
            (*(f"iifname {p} jump wl-to-host" for p in pats), f"jump {HEP_IN}"),
            hook="type filter hook input priority filter; policy accept;",
        ),
        # Host -> its own workloads is allowed in Calico (kubelet probes); ND to workloads needs it too.
        NftChain(
            "output",
            (*(f"oifname {p} accept" for p in pats), f"jump {HEP_OUT}"),
            hook="type filter hook output priority filter; policy accept;",
        ),
        NftChain("from-wl-dispatch", (f"iifname vmap @{FW_MAP}", "drop")),
        NftChain("to-wl-dispatch", (f"oifname vmap @{TW_MAP}", "drop")),
        NftChain("wl-to-host", tuple(wl_to_host)),
    ]
    if metadata:
        dnat = [
            f"iifname {p} ip daddr {hepm.METADATA_IP} tcp dport {hepm.METADATA_PORT} "
            f"dnat ip to {metadata[0]}:{metadata[1]}"
            for p in pats
        ]
        chains.append(
            NftChain("nat-prerouting", tuple(dnat), hook="type nat hook prerouting priority dstnat; policy accept;")
        )
    return chains


# --- host endpoints -----------------------------------------------------------------------------------

HEP_IN = "hep-in"
HEP_OUT = "hep-out"
HEP_FWD_IN = "hep-fwd-in"
HEP_FWD_OUT = "hep-fwd-out"
FAILSAFE_IN = "failsafe-in"
FAILSAFE_OUT = "failsafe-out"


def hep_chain(kind: str, iface: str) -> str:
    """kind: fh (to the host), th (from the host), fhf / thf (forwarded in / out). "/" cannot occur in an
    interface name, so the wildcard endpoint's "/all" never collides with a real interface's chain."""
    return f"{kind}-" + ("/all" if iface == hepm.WILDCARD else _ident(iface))


def failsafe_rules(failsafes: Iterable[FailsafePort], inbound: bool) -> list[str]:
    side = "saddr" if inbound else "daddr"
    out = []
    for proto, net, ports in hepm.grouped_ports(failsafes):
        match = ""
        if net is not None:
            fam = ipaddress.ip_network(net).version
            match = f"{'ip' if fam == 4 else 'ip6'} {side} {net} "
        out.append(f"{match}meta l4proto {proto} th dport {_ports((p, p) for p in ports)} accept")
    return out


def _hep_policy_chain(
    name: str,
    policed: hepm.Policed,
    inbound: bool,
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
    head: tuple[str, ...] = (),
    allow_if_none: bool = False,
) -> NftChain:
    if allow_if_none and not hepm.has_direction(policed.tiers, inbound):
        return NftChain(name, ("return",))  # forwarded traffic with no applyOnForward policy: left alone
    clear = f"meta mark set meta mark & {MARK_CLEAR:#010x}"
    rules = _endpoint_policy_rules(policed, inbound, known_policies, known_profiles)
    return NftChain(name, (*head, clear, *rules))


def _stage_rules(tiers: tuple[ev.TierInfo, ...], inbound: bool,
                 known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object], allow_chain: str) -> list[str]:
    """Untracked / pre-DNAT tiers (`hepm.stage_steps`): Allow goes to `allow_chain`, Deny drops (in the policy
    chain), Pass skips the rest of the tier, no match goes on (`return`)."""
    not_passed = f"meta mark & {MARK_PASS:#010x} == 0"
    lines: list[str] = []
    for step, pid in hepm.stage_steps(tiers, inbound, known_policies):
        if step == "clear":
            lines.append(f"meta mark set meta mark & {MARK_CLEAR:#010x}")
        elif step == "missing":
            lines.append(f"{not_passed} drop")  # out-of-order reference: fail closed until it arrives
        elif pid is not None:
            lines.append(f"{not_passed} jump {policy_chain(pid, inbound)}")
            lines.append(f"meta mark & {MARK_ACCEPT:#010x} != 0 goto {allow_chain}")
    lines.append("return")
    return lines


def _hep_dispatch(key: str, pats: list[str], heps: list[ev.HostEndpointUpdate], kind: str) -> list[str]:
    """Dispatch to per-interface host endpoint chains of `kind`: workload interfaces and loopback return first
    (host endpoint rules never police them), then each endpoint's interface, the "*" endpoint catching the rest."""
    lines = [*(f"{key} {p} return" for p in pats), f'{key} "lo" return']
    for hep in heps:
        target = f"goto {hep_chain(kind, hep.iface or '')}"
        lines.append(target if hep.iface == hepm.WILDCARD else f"{key} {_q(hep.iface or '')} {target}")
    return lines


UNTRACKED_ALLOW = "untracked-allow"
PRE_DNAT_ALLOW = "pre-dnat-allow"
HEP_SKIP = f"meta mark & {MARK_HEP_ALLOWED:#010x} != 0 return"


def _stage_chains(
    heps: list[ev.HostEndpointUpdate],
    pats: list[str],
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
) -> list[NftChain]:
    """The untracked (raw) and pre-DNAT stages, only when some host endpoint has such policy."""
    untracked = hepm.with_untracked(heps)
    pre_dnat = hepm.with_pre_dnat(heps)
    chains: list[NftChain] = []
    if untracked:
        clear_allowed = f"meta mark set meta mark & {0xFFFFFFFF & ~MARK_HEP_ALLOWED:#010x}"
        for base, key, kind, inbound, hook in (
            ("raw-prerouting", "iifname", "ui", True, "prerouting"),
            ("raw-output", "oifname", "uo", False, "output"),
        ):
            failsafe = FAILSAFE_IN if inbound else FAILSAFE_OUT
            for hep in untracked:
                chains.append(NftChain(hep_chain(kind, hep.iface or ""), (
                    f"jump {failsafe}",  # failsafe traffic is never dropped here (it stays tracked)
                    *_stage_rules(hep.untracked_tiers, inbound, known_policies, UNTRACKED_ALLOW),
                )))
            lines = (clear_allowed, *_hep_dispatch(key, pats, untracked, kind))
            chains.append(NftChain(base, lines, hook=f"type filter hook {hook} priority raw; policy accept;"))
        chains.append(NftChain(UNTRACKED_ALLOW, (
            f"meta mark set meta mark | {MARK_HEP_ALLOWED:#010x}", "notrack", "accept",
        )))
    if pre_dnat:
        for hep in pre_dnat:
            chains.append(NftChain(hep_chain("pd", hep.iface or ""), (
                f"jump {FAILSAFE_IN}",
                *_stage_rules(hep.pre_dnat_tiers, True, known_policies, PRE_DNAT_ALLOW),
            )))
        lines = ("ct state established,related accept", HEP_SKIP.replace("return", "accept"),
                 *_hep_dispatch("iifname", pats, pre_dnat, "pd"))
        chains.append(NftChain("pre-dnat", lines,
                               hook="type filter hook prerouting priority dstnat - 10; policy accept;"))
        chains.append(NftChain(PRE_DNAT_ALLOW, (f"meta mark set meta mark | {MARK_HEP_ALLOWED:#010x}", "accept")))
    return chains


def host_endpoint_chains(
    heps: list[ev.HostEndpointUpdate],
    prefixes: tuple[str, ...],
    fs_in: tuple[FailsafePort, ...],
    fs_out: tuple[FailsafePort, ...],
    known_policies: set[ev.PolicyID] | dict[ev.PolicyID, object],
    known_profiles: set[str] | dict[str, object],
) -> list[NftChain]:
    """Every host endpoint chain, dispatch included (few endpoints: plain rules, not verdict maps)."""
    pats = [_q(p + "*") for p in prefixes]
    ct = ("ct state established,related accept", "ct state invalid drop")
    chains = [
        NftChain(FAILSAFE_IN, tuple(failsafe_rules(fs_in, True))),
        NftChain(FAILSAFE_OUT, tuple(failsafe_rules(fs_out, False))),
    ]
    stages = _stage_chains(heps, pats, known_policies)
    # Allowed by untracked / pre-DNAT policy: normal policy is skipped. Only when those stages exist, since
    # they are what clears the bit on the way in (a local process could otherwise set it with SO_MARK).
    skip = (HEP_SKIP,) if stages else ()
    for dname, kind, key in (
        (HEP_IN, "fh", "iifname"),
        (HEP_OUT, "th", "oifname"),
        (HEP_FWD_IN, "fhf", "iifname"),
        (HEP_FWD_OUT, "thf", "oifname"),
    ):
        chains.append(NftChain(dname, tuple(_hep_dispatch(key, pats, heps, kind))))
    for hep in heps:
        iface = hep.iface or ""
        normal = hepm.policed_normal(hep)
        fwd = hepm.policed_forward(hep)
        chains += [
            _hep_policy_chain(hep_chain("fh", iface), normal, True, known_policies, known_profiles,
                              head=(*skip, *ct, f"jump {FAILSAFE_IN}")),
            _hep_policy_chain(hep_chain("th", iface), normal, False, known_policies, known_profiles,
                              head=(*skip, *ct, f"jump {FAILSAFE_OUT}")),
            _hep_policy_chain(hep_chain("fhf", iface), fwd, True, known_policies, known_profiles,
                              head=(*skip, "ct state invalid drop"), allow_if_none=True),
            _hep_policy_chain(hep_chain("thf", iface), fwd, False, known_policies, known_profiles,
                              head=(*skip, "ct state invalid drop"), allow_if_none=True),
        ]
    return chains + stages


def state_host_endpoint_chains(state: DesiredState) -> list[NftChain]:
    return host_endpoint_chains(
        hepm.active_host_endpoints(state),
        state.config.interface_prefixes,
        state.config.failsafe_inbound,
        state.config.failsafe_outbound,
        state.policies,
        state.profiles,
    )


def dispatch_entries(ep: ev.WorkloadEndpointUpdate) -> tuple[tuple[str, str], tuple[str, str]]:
    """(fw map entry, tw map entry) for an endpoint: iface -> "goto <chain>"."""
    return (ep.iface, f"goto {fw_chain(ep.iface)}"), (ep.iface, f"goto {tw_chain(ep.iface)}")


def empty_model(
    prefixes: tuple[str, ...] = ("cali",), endpoint_to_host: str = "Drop", metadata: tuple[str, int] | None = None
) -> TableModel:
    """The start-of-day table: dispatch with empty maps, so every workload interface is dropped (host
    interfaces are left alone until host endpoints are known)."""
    model = TableModel(maps={FW_MAP: {}, TW_MAP: {}})
    for chain in base_chains(prefixes, endpoint_to_host, metadata):
        model.chains[chain.name] = chain
    for chain in host_endpoint_chains([], prefixes, (), (), {}, {}):
        model.chains[chain.name] = chain
    return model


def render_model(state: DesiredState) -> TableModel:
    """The full table for a desired state (start of day, or a full reapply after drift)."""
    model = empty_model(state.config.interface_prefixes, state.config.endpoint_to_host_action, state.config.metadata)
    for sid in sorted(state.ipsets):
        for s in ipset_sets(sid, state.ipsets[sid]):
            model.sets[s.name] = s
    chains: list[NftChain] = []
    for pid in sorted(state.policies):
        chains += policy_chains(state.policies[pid])
    for prof in sorted(state.profiles):
        chains += profile_chains(state.profiles[prof])
    for eid in sorted(state.endpoints):
        ep = state.endpoints[eid]
        chains += endpoint_chains(ep, state.policies, state.profiles)
        fw, tw = dispatch_entries(ep)
        model.maps[FW_MAP][fw[0]] = fw[1]
        model.maps[TW_MAP][tw[0]] = tw[1]
    chains += state_host_endpoint_chains(state)
    for chain in chains:
        model.chains[chain.name] = chain
        for ref in chain.set_refs:
            if ref not in model.sets:  # referenced before it exists: an empty set (matches nothing)
                model.sets[ref] = empty_set_for_name(ref)
    return model


# --- text ---------------------------------------------------------------------------------------------


def set_decl(s: NftSet, with_elements: bool = True) -> str:
    flags = " flags interval;" if s.interval else ""
    elems = f" elements = {{ {', '.join(sorted(s.elements))} }};" if with_elements and s.elements else ""
    return f"set {s.name} {{ type {s.type};{flags}{elems} }}"


def map_decl(name: str, elements: dict[str, str]) -> str:
    elems = ", ".join(f"{_q(k)} : {v}" for k, v in sorted(elements.items()))
    body = f" elements = {{ {elems} }};" if elems else ""
    return f"map {name} {{ type ifname : verdict;{body} }}"


def _chain_order(model: TableModel) -> list[str]:
    # Deterministic: non-base chains sorted, then base chains; nft resolves jumps within one file anyway.
    base = [c for c in model.chains if model.chains[c].hook]
    return sorted(c for c in model.chains if not model.chains[c].hook) + sorted(base)


def render_table_body(model: TableModel) -> str:
    lines = [f"table {FAMILY} {TABLE} {{"]
    for name in sorted(model.sets):
        lines.append("\t" + set_decl(model.sets[name]))
    for name in sorted(model.maps):
        lines.append("\t" + map_decl(name, model.maps[name]))
    for name in _chain_order(model):
        chain = model.chains[name]
        lines.append(f"\tchain {name} {{")
        if chain.hook:
            lines.append(f"\t\t{chain.hook}")
        lines.extend(f"\t\t{tagged(r)}" for r in chain.rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_text(model: TableModel) -> str:
    """The table definition alone (deterministic; hashed by `TableModel.digest`)."""
    return render_table_body(model)


def render_replace(model: TableModel) -> str:
    """One atomic transaction replacing the whole table: add (so delete cannot fail), delete, define."""
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n" + render_table_body(model)

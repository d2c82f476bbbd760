"""A workload endpoint's iptables chains, the policy groups they go to, and the workload dispatch.

In: a `WorkloadEndpointUpdate`, a family, and which policies and profiles are known; for the dispatch, every
local workload interface. Out: `Chain`s. Pure.

    cali-from-wl-dispatch      -i cali7+ -g cali-fwd-cali7 (a bucket per first character after the prefix);
                               -i <prefix>+ DROP   <- fail closed
    cali-fwd-<bucket>          -i <iface> -g cali-fw-<iface> ...; DROP
    cali-to-wl-dispatch, cali-twd-<bucket>   the same for -o / cali-tw-<iface>
    cali-fw-<iface>/cali-tw-<iface>  clear marks, anti-spoof (fw), goto the endpoint's policy group
    cali-pgi-/cali-pgo-<hash>  a policy group: tiers, profiles, DROP; shared by endpoints with equal policies
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from calico.calculation import events as ev
from calico.dataplane import ruleids as rid
from calico.dataplane.iptables.model import Chain, Rule, b64hash
from calico.dataplane.iptables.names import (
    DISPATCH_BUCKET_PREFIXES,
    FROM_WL,
    GROUP_PREFIXES,
    MAX_CHAIN,
    TO_WL,
    chain_id,
    fw_chain,
    tw_chain,
)
from calico.dataplane.iptables.rules import not_nets, own_nets
from calico.dataplane.iptables.walk import clear, walk_rules
from calico.dataplane.marks import MARK_BOTH
from calico.dataplane.tiers import endpoint_steps

SPOOFED = rid.verdict(rid.Kind.SPOOFED, False, rid.Stage.WORKLOAD).text
UNKNOWN = {inbound: rid.verdict(rid.Kind.UNKNOWN_IFACE, inbound, rid.Stage.WORKLOAD).text for inbound in (False, True)}


def endpoint_chains(
    ep: ev.WorkloadEndpointUpdate, fam: int, known_policies: Collection[ev.PolicyID], known_profiles: Collection[str],
) -> list[Chain]:
    """cali-fw-<iface> (from the workload: anti-spoofing, then its egress policy) and cali-tw-<iface> (its
    ingress policy), each ending in a goto to a policy-group chain: the tier/policy/profile sequence of one
    direction, named by its content and shared by every endpoint with the same policies (as in the nftables
    backend), so a new endpoint writes a few rules instead of hundreds. A goto keeps RETURN semantics."""
    out_group, in_group = (
        group_chain(walk_rules(endpoint_steps(ep, inbound, known_policies, known_profiles), inbound,
                               rid.Stage.WORKLOAD), inbound)
        for inbound in (False, True)
    )
    fw = [clear(MARK_BOTH)]
    if ep.mac:  # the endpoint names its MAC (OpenStack ports): a workload that changes it is dropped
        fw.append(Rule(f"-m mac ! --mac-source {ep.mac.upper()}", "-j DROP", SPOOFED))
    own = own_nets([*(ep.ipv4_nets if fam == 4 else ep.ipv6_nets), *ep.allow_spoofed_source_prefixes], fam)
    if own:
        fw.append(Rule(" ".join(not_nets("-s", own, plain_ok=True)), "-j DROP", SPOOFED))  # anti-spoofing
    else:
        fw.append(Rule("", "-j DROP", SPOOFED))  # no address of this family: nothing of it may leave
    fw.append(Rule("", f"-g {out_group.name}"))
    tw = [clear(MARK_BOTH), Rule("", f"-g {in_group.name}")]
    return [Chain(fw_chain(ep.iface), tuple(fw)), Chain(tw_chain(ep.iface), tuple(tw)), out_group, in_group]


def endpoint_groups(model: dict[str, Chain], iface: str) -> tuple[str, ...]:
    """The policy groups an endpoint's rendered chains go to: the target of each one's last rule (`-g <group>`),
    read back from `model` rather than rendered again."""
    return tuple(model[c].rules[-1].target.removeprefix("-g ") for c in (fw_chain(iface), tw_chain(iface)))


def group_chain(rules: list[Rule], inbound: bool) -> Chain:
    prefix = GROUP_PREFIXES[0] if inbound else GROUP_PREFIXES[1]
    digest = b64hash("\n".join(f"{x.match}\x00{x.target}" for x in rules), MAX_CHAIN - len(prefix))
    return Chain(prefix + digest.replace("-", "_"), tuple(rules))


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
    for flag, bucket_prefix, top, chain_of, unknown in (
        ("-i", DISPATCH_BUCKET_PREFIXES[0], FROM_WL, fw_chain, UNKNOWN[False]),
        ("-o", DISPATCH_BUCKET_PREFIXES[1], TO_WL, tw_chain, UNKNOWN[True]),
    ):
        rules = [Rule(f"{flag} {n}", f"-g {chain_of(n)}") for n in direct]
        for key, names in sorted(buckets.items()):
            bucket = chain_id(bucket_prefix, key)
            rules.append(Rule(f"{flag} {key}+", f"-g {bucket}"))
            out.append(Chain(bucket, (*(Rule(f"{flag} {n}", f"-g {chain_of(n)}") for n in names),
                                      Rule("", "-j DROP", unknown))))
        rules += [Rule(f"{flag} {p}+", "-j DROP", unknown) for p in prefixes]
        out.append(Chain(top, tuple(rules)))
    return out

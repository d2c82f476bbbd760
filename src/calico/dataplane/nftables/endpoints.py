"""A workload endpoint's chains in nftables: `fw-<iface>`, `tw-<iface>` and the policy groups they go to.

In: a `WorkloadEndpointUpdate` and which policies and profiles are known. Out: its `NftChain`s and its two
dispatch-map entries (iface -> goto chain). Pure.

A policy group is the rendered tier/policy/profile sequence for one direction, named by its content, so every
endpoint with the same ordered policies shares one chain. Adding an endpoint then adds two short chains and
two map entries instead of copying hundreds of jumps, which keeps the table (and nft's per-transaction cost,
which grows with the table) small. The group's `return`/`drop` verdicts act exactly as if inlined: `goto`
does not push a return address.
"""

from __future__ import annotations

from collections.abc import Collection

from calico.calculation import events as ev
from calico.dataplane import ruleids as rid
from calico.dataplane.nftables.model import NftChain
from calico.dataplane.nftables.names import count, fw_chain, short_hash, tw_chain
from calico.dataplane.nftables.rules import nets_expr
from calico.dataplane.nftables.sets import collapse
from calico.dataplane.nftables.walk import CLEAR_MARKS, walk_rules
from calico.dataplane.tiers import endpoint_steps

SPOOFED = count(rid.verdict(rid.Kind.SPOOFED, False, rid.Stage.WORKLOAD))


def _own_nets(ep: ev.WorkloadEndpointUpdate, fam: int) -> list[str]:
    nets = ep.ipv4_nets if fam == 4 else ep.ipv6_nets
    return collapse([*nets, *ep.allow_spoofed_source_prefixes], fam)


def endpoint_chains(
    ep: ev.WorkloadEndpointUpdate, known_policies: Collection[ev.PolicyID], known_profiles: Collection[str],
) -> list[NftChain]:
    """fw-<iface> (traffic from the workload: anti-spoofing, then its egress policy) and tw-<iface> (its ingress
    policy), each ending in a `goto` to a policy-group chain; then the two groups (egress, ingress)."""
    groups = [
        _group_chain(walk_rules(endpoint_steps(ep, inbound, known_policies, known_profiles), inbound,
                                rid.Stage.WORKLOAD), inbound)
        for inbound in (False, True)
    ]
    fw = [CLEAR_MARKS]
    if ep.mac:  # the endpoint names its MAC (OpenStack ports): a workload that changes it is dropped
        fw.append(f"ether saddr != {ep.mac.lower()} {SPOOFED} drop")
    for fam, ip in ((4, "ip"), (6, "ip6")):
        own = _own_nets(ep, fam)
        if own:
            fw.append(f"meta nfproto ipv{fam} {ip} saddr != {nets_expr(own)} {SPOOFED} drop")
        else:
            fw.append(f"meta nfproto ipv{fam} {SPOOFED} drop")
    fw.append(f"goto {groups[0].name}")
    tw = [CLEAR_MARKS, f"goto {groups[1].name}"]
    return [NftChain(fw_chain(ep.iface), tuple(fw)), NftChain(tw_chain(ep.iface), tuple(tw)), *groups]


def _group_chain(lines: list[str], inbound: bool) -> NftChain:
    return NftChain(f"pg{'i' if inbound else 'o'}-{short_hash(chr(10).join(lines))}", tuple(lines))


def dispatch_entries(ep: ev.WorkloadEndpointUpdate) -> tuple[tuple[str, str], tuple[str, str]]:
    """(fw map entry, tw map entry) for an endpoint: iface -> "goto <chain>"."""
    return (ep.iface, f"goto {fw_chain(ep.iface)}"), (ep.iface, f"goto {tw_chain(ep.iface)}")

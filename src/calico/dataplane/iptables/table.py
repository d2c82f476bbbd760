"""Calico's whole set of iptables chains for one address family, and the ipsets they need.

In: a `DesiredState` and a family (4, 6). Out: every `Chain` of the filter table (`render_family`), the
fail-closed chains of the start of day, and the ipsets rules name (`render_ipsets`). Pure.

    FORWARD / INPUT / OUTPUT   one jump each, inserted at the top, to cali-FORWARD / cali-INPUT / cali-OUTPUT
    cali-FORWARD               ct established/related accept; invalid from/to a workload drop; clear our mark
                               bits; -> cali-from-hep-forward; -i <prefix>+ -> cali-from-wl-dispatch;
                               -o <prefix>+ -> cali-to-wl-dispatch; -> cali-to-hep-forward; accept what policy
                               accepted
    cali-INPUT                 -i <prefix>+ -> cali-wl-to-host; -> cali-from-host-endpoint
    cali-OUTPUT                -o <prefix>+ return (host -> local workload is allowed, as in Calico);
                               -> cali-to-host-endpoint
    cali-wl-to-host            ct, DHCP, DNS, IPv6 ND accepted; egress policy via cali-from-wl-dispatch;
                               then DefaultEndpointToHostAction
    dispatch, endpoint chains and policy groups: `endpoints`; policies and profiles: `rules`; host endpoints:
    `hep_chains`; metadata DNAT (nat table): `nat`; untracked / pre-DNAT stages (raw, mangle): `stages`
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.dataplane import ruleids as rid
from calico.dataplane import tohost
from calico.dataplane.config import MetadataTarget
from calico.dataplane.iptables import flowlog
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables.endpoints import dispatch_chains, endpoint_chains
from calico.dataplane.iptables.hep_chains import host_endpoint_chains, state_host_endpoint_chains
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import (
    FORWARD,
    FROM_HEP,
    FROM_HEP_FWD,
    FROM_WL,
    INPUT,
    OUTPUT,
    TO_HEP,
    TO_HEP_FWD,
    TO_WL,
    WL_TO_HOST,
)
from calico.dataplane.iptables.rules import policy_chains, profile_chains
from calico.dataplane.iptables.walk import ACCEPTED, clear
from calico.dataplane.marks import MARK_BOTH
from calico.dataplane.state import DesiredState


def base_chains(
    fam: int, prefixes: tuple[str, ...], endpoint_to_host: str, metadata: MetadataTarget | None = None
) -> list[Chain]:
    """The fixed chains; they depend only on config (interface prefixes, endpoint-to-host action, metadata)."""
    ct = "-m conntrack --ctstate"
    wl = rid.Stage.WORKLOAD
    invalid_from, invalid_to = (rid.verdict(rid.Kind.INVALID, inbound, wl).text for inbound in (False, True))
    forward = [Rule(f"{ct} RELATED,ESTABLISHED", "-j ACCEPT")]
    forward += [Rule(f"-i {p}+ {ct} INVALID", "-j DROP", invalid_from) for p in prefixes]
    forward += [Rule(f"-o {p}+ {ct} INVALID", "-j DROP", invalid_to) for p in prefixes]
    forward.append(clear(MARK_BOTH))  # only policy may set our bits
    forward.append(Rule("", f"-j {FROM_HEP_FWD}"))
    forward += [Rule(f"-i {p}+", f"-j {FROM_WL}") for p in prefixes]
    forward += [Rule(f"-o {p}+", f"-j {TO_WL}") for p in prefixes]
    forward.append(Rule("", f"-j {TO_HEP_FWD}"))
    forward.append(Rule(ACCEPTED, "-j ACCEPT"))
    dhcp = ",".join(map(str, tohost.DHCP_PORTS[fam]))
    to_host = [
        Rule(f"{ct} RELATED,ESTABLISHED", "-j ACCEPT"),
        Rule(f"{ct} INVALID", "-j DROP", invalid_from),
    ]
    if metadata and fam == 4:  # OpenStack metadata (DNATed in nat PREROUTING) before the egress policy
        to_host.append(Rule(f"-p tcp -d {metadata.addr}/32 --dport {metadata.port}", "-j ACCEPT"))
    to_host += [
        Rule(f"-p udp -m multiport --dports {dhcp}", "-j ACCEPT"),  # DHCP
        Rule(f"-p udp --dport {tohost.DNS_PORT}", "-j ACCEPT"),  # DNS
        Rule(f"-p tcp --dport {tohost.DNS_PORT}", "-j ACCEPT"),
    ]
    if fam == 6:
        to_host += [Rule(f"-p ipv6-icmp -m icmp6 --icmpv6-type {t}", "-j ACCEPT") for t in tohost.ND_TYPES]
    to_host += [clear(MARK_BOTH), Rule("", f"-j {FROM_WL}")]  # egress policy; unknown interfaces drop there
    to_host_action = tohost.action(endpoint_to_host)
    action = f"-j {to_host_action.upper()}"
    verdict = {"accept": rid.Action.ALLOW, "drop": rid.Action.DENY}.get(to_host_action)  # RETURN decides nothing
    counted = None if verdict is None else rid.verdict(rid.Kind.TO_HOST, False, wl, verdict).text
    to_host.append(Rule("", action, counted))
    return [
        Chain(FORWARD, tuple(forward)),
        Chain(INPUT, (*(Rule(f"-i {p}+", f"-j {WL_TO_HOST}") for p in prefixes), Rule("", f"-j {FROM_HEP}"))),
        Chain(OUTPUT, (*(Rule(f"-o {p}+", "-j RETURN") for p in prefixes), Rule("", f"-j {TO_HEP}"))),
        Chain(WL_TO_HOST, tuple(to_host)),
    ]


def fail_closed_chains(
    fam: int, prefixes: tuple[str, ...] = ("cali",), endpoint_to_host: str = "Drop",
    metadata: MetadataTarget | None = None,
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
    chains += dispatch_chains((ep.iface for ep in state.endpoints.values()), cfg.interface_prefixes)
    for pid in sorted(state.policies):
        chains += policy_chains(state.policies[pid], fam)
    for prof in sorted(state.profiles):
        chains += profile_chains(state.profiles[prof], fam)
    for eid in sorted(state.endpoints):
        chains += endpoint_chains(state.endpoints[eid], fam, state.policies, state.profiles)
    return {c.name: flowlog.logged(c, cfg.flow_logs) for c in chains}


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

"""Host endpoint chains in nftables: dispatch, failsafes, the four policy chains per endpoint, and the
untracked (raw) and pre-DNAT stages.

In: the active host endpoints (`hostendpoints.active_host_endpoints`), workload interface prefixes, failsafe
ports, and the known policies and profiles. Out: `NftChain`s (few endpoints: plain dispatch rules, not verdict
maps). Semantics: `calico.dataplane.hostendpoints`. Pure.

    hep-in / hep-out        host endpoint dispatch (workload interfaces and lo return first): iifname/oifname
    hep-fwd-in/-out         "<iface>" goto fh-/th-/fhf-/thf-<iface>; then the "*" endpoint's chain, if any
    fh-/th-<iface>          to / from the host: ct, failsafe-in / failsafe-out, tiers, profiles, drop
    fhf-/thf-<iface>        forwarded in / out: applyOnForward tiers, drop (return when none apply)
    raw-prerouting/-output  (only with doNotTrack policy) hooks at priority raw: clear MARK_HEP_ALLOWED,
                            failsafes, then ui-/uo-<iface>: untracked tiers; Allow -> untracked-allow (set
                            MARK_HEP_ALLOWED, notrack, accept); Deny drops; no match goes on
    pre-dnat                (only with preDNAT policy; hook prerouting priority dstnat - 10) ct established
                            accept, failsafes, pd-<iface>: preDNAT tiers; Allow -> pre-dnat-allow (mark, accept)
    fh-/th-/fhf-/thf- chains return at once for a packet carrying MARK_HEP_ALLOWED (only while a stage exists,
    since the stages are what clear the bit on the way in): allowed there skips normal policy (Calico's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane import ruleids as rid
from calico.dataplane.config import FailsafePort
from calico.dataplane.marks import MARK_ACCEPT, MARK_HEP_ALLOWED
from calico.dataplane.nftables.model import NftChain
from calico.dataplane.nftables.names import (
    FAILSAFE_IN,
    FAILSAFE_OUT,
    HEP_FWD_IN,
    HEP_FWD_OUT,
    HEP_IN,
    HEP_OUT,
    PRE_DNAT_ALLOW,
    UNTRACKED_ALLOW,
    count,
    hep_chain,
    quote,
)
from calico.dataplane.nftables.rules import ports_expr
from calico.dataplane.nftables.walk import CLEAR_MARKS, walk_rules
from calico.dataplane.state import DesiredState
from calico.dataplane.tiers import endpoint_steps, stage_steps

# Each policy chain's dispatch chain; iifname for inbound roles, oifname for outbound.
_DISPATCH = {"fh": HEP_IN, "th": HEP_OUT, "fhf": HEP_FWD_IN, "thf": HEP_FWD_OUT}
HEP_SKIP = f"meta mark & {MARK_HEP_ALLOWED:#010x} != 0 return"
_SET_ALLOWED = f"meta mark set meta mark | {MARK_HEP_ALLOWED:#010x}"


def _invalid(inbound: bool, stage: rid.Stage) -> str:
    return f"ct state invalid {count(rid.verdict(rid.Kind.INVALID, inbound, stage))} drop"


def failsafe_rules(failsafes: Iterable[FailsafePort], inbound: bool) -> list[str]:
    """The failsafe chains' rules (one chain per direction, which every stage jumps to: counted as stage h)."""
    side = "saddr" if inbound else "daddr"
    counted = count(rid.verdict(rid.Kind.FAILSAFE, inbound, rid.Stage.HOST, rid.Action.ALLOW))
    out = []
    for proto, net, ports in hepm.grouped_ports(failsafes):
        match = ""
        if net is not None:
            fam = ipaddress.ip_network(net).version
            match = f"{'ip' if fam == 4 else 'ip6'} {side} {net} "
        out.append(f"{match}meta l4proto {proto} th dport {ports_expr((p, p) for p in ports)} {counted} accept")
    return out


def _dispatch(key: str, pats: list[str], heps: list[ev.HostEndpointUpdate], kind: str) -> list[str]:
    """Dispatch to per-interface host endpoint chains of `kind`: workload interfaces and loopback return first
    (host endpoint rules never police them), then each endpoint's interface, the "*" endpoint catching the rest."""
    lines = [*(f"{key} {p} return" for p in pats), f'{key} "lo" return']
    for hep in heps:
        target = f"goto {hep_chain(kind, hep.iface or '')}"
        lines.append(target if hep.iface == hepm.WILDCARD else f"{key} {quote(hep.iface or '')} {target}")
    return lines


def _policy_chain(hep: ev.HostEndpointUpdate, role: hepm.HepChainRole, skip: tuple[str, ...],
                  known_policies: Collection[ev.PolicyID], known_profiles: Collection[str]) -> NftChain:
    name = hep_chain(role.key, hep.iface or "")
    if role.left_alone(hep):
        return NftChain(name, ("return",))
    failsafe = FAILSAFE_IN if role.inbound else FAILSAFE_OUT
    stage = rid.Stage.FORWARD if role.forward else rid.Stage.HOST
    invalid = _invalid(role.inbound, stage)
    head = ((*skip, invalid) if role.forward
            else (*skip, "ct state established,related accept", invalid, f"jump {failsafe}"))
    steps = endpoint_steps(role.policed(hep), role.inbound, known_policies, known_profiles)
    return NftChain(name, (*head, CLEAR_MARKS, *walk_rules(steps, role.inbound, stage)))


def _stage_rules(tiers: tuple[ev.TierInfo, ...], inbound: bool, known_policies: Collection[ev.PolicyID],
                 allow_chain: str, stage: rid.Stage) -> list[str]:
    """Untracked / pre-DNAT tiers: Allow goes to `allow_chain`, Deny drops (in the policy chain), Pass skips the
    rest of the tier, no match goes on (`return`)."""
    return walk_rules(stage_steps(tiers, inbound, known_policies), inbound, stage,
                      accepted=f"meta mark & {MARK_ACCEPT:#010x} != 0 goto {allow_chain}")


def _stage_chains(
    heps: list[ev.HostEndpointUpdate], pats: list[str], known_policies: Collection[ev.PolicyID]
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
                    *_stage_rules(hep.untracked_tiers, inbound, known_policies, UNTRACKED_ALLOW, rid.Stage.UNTRACKED),
                )))
            lines = (clear_allowed, *_dispatch(key, pats, untracked, kind))
            chains.append(NftChain(base, lines, hook=f"type filter hook {hook} priority raw; policy accept;"))
        chains.append(NftChain(UNTRACKED_ALLOW, (_SET_ALLOWED, "notrack", "accept")))
    if pre_dnat:
        for hep in pre_dnat:
            chains.append(NftChain(hep_chain("pd", hep.iface or ""), (
                f"jump {FAILSAFE_IN}",
                *_stage_rules(hep.pre_dnat_tiers, True, known_policies, PRE_DNAT_ALLOW, rid.Stage.PRE_DNAT),
            )))
        lines = ("ct state established,related accept", HEP_SKIP.replace("return", "accept"),
                 *_dispatch("iifname", pats, pre_dnat, "pd"))
        chains.append(NftChain("pre-dnat", lines,
                               hook="type filter hook prerouting priority dstnat - 10; policy accept;"))
        chains.append(NftChain(PRE_DNAT_ALLOW, (_SET_ALLOWED, "accept")))
    return chains


def host_endpoint_chains(
    heps: list[ev.HostEndpointUpdate],
    prefixes: tuple[str, ...],
    fs_in: tuple[FailsafePort, ...],
    fs_out: tuple[FailsafePort, ...],
    known_policies: Collection[ev.PolicyID],
    known_profiles: Collection[str],
) -> list[NftChain]:
    """Every host endpoint chain, dispatch and failsafes included."""
    pats = [quote(p + "*") for p in prefixes]
    chains = [
        NftChain(FAILSAFE_IN, tuple(failsafe_rules(fs_in, True))),
        NftChain(FAILSAFE_OUT, tuple(failsafe_rules(fs_out, False))),
    ]
    stages = _stage_chains(heps, pats, known_policies)
    # Allowed by untracked / pre-DNAT policy: normal policy is skipped. Only when those stages exist, since
    # they are what clears the bit on the way in (a local process could otherwise set it with SO_MARK).
    skip = (HEP_SKIP,) if stages else ()
    for role in hepm.HEP_ROLES:
        key = "iifname" if role.inbound else "oifname"
        chains.append(NftChain(_DISPATCH[role.key], tuple(_dispatch(key, pats, heps, role.key))))
    for hep in heps:
        chains += [_policy_chain(hep, role, skip, known_policies, known_profiles) for role in hepm.HEP_ROLES]
    return chains + stages


def state_host_endpoint_chains(state: DesiredState) -> list[NftChain]:
    cfg = state.config
    return host_endpoint_chains(hepm.active_host_endpoints(state), cfg.interface_prefixes, cfg.failsafe_inbound,
                                cfg.failsafe_outbound, state.policies, state.profiles)

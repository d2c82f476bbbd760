"""Host endpoint chains in iptables' filter table: dispatch, failsafes and four policy chains per endpoint.

In: the active host endpoints (`hostendpoints.active_host_endpoints`), a family, workload interface prefixes,
failsafe ports, and the known policies and profiles. Out: `Chain`s. Semantics: `calico.dataplane.hostendpoints`;
the untracked and pre-DNAT stages live in other tables (`stages.py`). Pure.

    cali-from-host-endpoint,   host endpoint dispatch (workload interfaces and lo return first): -i/-o <iface>
    cali-to-host-endpoint,     -g cali-fh-/cali-th-/cali-fhfw-/cali-thfw-<iface>, then the "*" endpoint's
    cali-from/to-hep-forward   chain if there is one. fh/th: ct, cali-failsafe-in/-out, tiers, profiles, DROP;
                               fhfw/thfw: applyOnForward tiers, DROP (RETURN when none apply)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane import ruleids as rid
from calico.dataplane.config import FailsafePort
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import FAILSAFE_IN, FAILSAFE_OUT, HEP_ROLE_CHAINS, HEP_ROLE_DISPATCH, hep_chain
from calico.dataplane.iptables.rules import port_chunks
from calico.dataplane.iptables.walk import clear, walk_rules
from calico.dataplane.marks import MARK_BOTH, MARK_HEP_ALLOWED
from calico.dataplane.state import DesiredState
from calico.dataplane.tiers import endpoint_steps

_CT = "-m conntrack --ctstate"


def failsafe_rules(failsafes: Iterable[FailsafePort], fam: int, inbound: bool) -> list[Rule]:
    """The failsafe chains' rules (their copies in raw and mangle too: every stage counts as stage h)."""
    flag = "-s" if inbound else "-d"
    counted = rid.verdict(rid.Kind.FAILSAFE, inbound, rid.Stage.HOST, rid.Action.ALLOW).text
    out = []
    for proto, net, ports in hepm.grouped_ports(failsafes, fam):
        where = f" {flag} {net}" if net is not None else ""
        out += [Rule(f"-p {proto}{where} -m multiport --dports {c}", "-j ACCEPT", counted)
                for c in port_chunks((p, p) for p in ports)]
    return out


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


def _policy_chain(hep: ev.HostEndpointUpdate, role: hepm.HepChainRole, skip: tuple[Rule, ...],
                  known_policies: Collection[ev.PolicyID], known_profiles: Collection[str]) -> Chain:
    name = hep_chain(HEP_ROLE_CHAINS[role.key], hep.iface or "")
    if role.left_alone(hep):
        return Chain(name, (Rule("", "-j RETURN"),))
    stage = rid.Stage.FORWARD if role.forward else rid.Stage.HOST
    invalid = Rule(f"{_CT} INVALID", "-j DROP", rid.verdict(rid.Kind.INVALID, role.inbound, stage).text)
    if role.forward:
        head: tuple[Rule, ...] = (*skip, invalid)
    else:
        failsafe = FAILSAFE_IN if role.inbound else FAILSAFE_OUT
        head = (*skip, Rule(f"{_CT} RELATED,ESTABLISHED", "-j ACCEPT"), invalid, Rule("", f"-j {failsafe}"))
    steps = endpoint_steps(role.policed(hep), role.inbound, known_policies, known_profiles)
    return Chain(name, (*head, clear(MARK_BOTH), *walk_rules(steps, role.inbound, stage)))


def host_endpoint_chains(
    heps: list[ev.HostEndpointUpdate],
    fam: int,
    prefixes: tuple[str, ...],
    fs_in: tuple[FailsafePort, ...],
    fs_out: tuple[FailsafePort, ...],
    known_policies: Collection[ev.PolicyID],
    known_profiles: Collection[str],
    skip_allowed: bool = False,
) -> list[Chain]:
    """Every host endpoint chain of one family, dispatch and failsafe chains included. `skip_allowed` (set when
    untracked / pre-DNAT stages exist, which clear the bit on the way in): a packet those stages allowed
    returns at once from every endpoint chain, skipping normal policy."""
    skip = (Rule(f"-m mark --mark {MARK_HEP_ALLOWED:#x}/{MARK_HEP_ALLOWED:#x}", "-j RETURN"),) if skip_allowed else ()
    chains = [
        Chain(FAILSAFE_IN, tuple(failsafe_rules(fs_in, fam, True))),
        Chain(FAILSAFE_OUT, tuple(failsafe_rules(fs_out, fam, False))),
    ]
    for role in hepm.HEP_ROLES:
        flag = "-i" if role.inbound else "-o"
        chains.append(hep_dispatch(HEP_ROLE_DISPATCH[role.key], flag, prefixes, heps, HEP_ROLE_CHAINS[role.key]))
    for hep in heps:
        chains += [_policy_chain(hep, role, skip, known_policies, known_profiles) for role in hepm.HEP_ROLES]
    return chains


def state_host_endpoint_chains(state: DesiredState, fam: int) -> list[Chain]:
    heps = hepm.active_host_endpoints(state)
    cfg = state.config
    return host_endpoint_chains(
        heps, fam, cfg.interface_prefixes, cfg.failsafe_inbound, cfg.failsafe_outbound, state.policies,
        state.profiles, skip_allowed=bool(hepm.with_untracked(heps) or hepm.with_pre_dnat(heps)),
    )

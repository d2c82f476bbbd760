"""The untracked (raw table) and pre-DNAT (mangle table) stages of host endpoint policy, for iptables.

In: a `DesiredState` and a family. Out: the chains each table needs (none at all without doNotTrack / preDNAT
policy, so most hosts pay nothing); `side` writes them whole and reads them back, as it does nat's. Pure: no
I/O. Semantics as in `calico.dataplane.hostendpoints`.

    raw    PREROUTING/OUTPUT -> cali-PREROUTING/cali-OUTPUT: clear MARK_HEP_ALLOWED; workload ifaces and lo
           return; -i/-o <iface> -g cali-ui-/cali-uo-<iface>: failsafes, untracked tiers (Allow ->
           cali-untracked-allow: set the mark, CT --notrack, ACCEPT); the policy chains they jump to
    mangle PREROUTING -> cali-PREROUTING: established accept, untracked-allowed accept, workload ifaces and lo
           return; -i <iface> -g cali-pd-<iface>: failsafes, preDNAT tiers (Allow -> cali-pre-dnat-allow)

iptables cannot jump between tables, so each table carries its own copy of the policy chains it uses.
"""

from __future__ import annotations

from collections.abc import Collection

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane import ruleids as rid
from calico.dataplane.iptables import flowlog
from calico.dataplane.iptables.hep_chains import failsafe_rules, hep_dispatch
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import FAILSAFE_IN, FAILSAFE_OUT, hep_chain
from calico.dataplane.iptables.rules import policy_chains
from calico.dataplane.iptables.walk import ACCEPTED, walk_rules
from calico.dataplane.marks import MARK_HEP_ALLOWED
from calico.dataplane.state import DesiredState
from calico.dataplane.tiers import stage_steps

STAGE_TABLES = ("raw", "mangle")
UNTRACKED_ALLOW = "cali-untracked-allow"
PRE_DNAT_ALLOW = "cali-pre-dnat-allow"
_HAS_MARK = f"-m mark --mark {MARK_HEP_ALLOWED:#x}/{MARK_HEP_ALLOWED:#x}"


def stages_needed(state: DesiredState) -> bool:
    heps = hepm.active_host_endpoints(state)
    return bool(hepm.with_untracked(heps) or hepm.with_pre_dnat(heps))


def _stage_rules(tiers: tuple[ev.TierInfo, ...], inbound: bool, known: Collection[ev.PolicyID],
                 allow_chain: str, stage: rid.Stage) -> list[Rule]:
    """Untracked / pre-DNAT tiers: Allow -> allow_chain, Deny drops (in the policy chain), Pass skips the
    tier's rest, no match goes on (RETURN)."""
    return walk_rules(stage_steps(tiers, inbound, known), inbound, stage,
                      accepted=Rule(ACCEPTED, f"-g {allow_chain}"))


def _policies(heps: list[ev.HostEndpointUpdate], attr: str, state: DesiredState, fam: int) -> list[Chain]:
    pids = sorted({p for h in heps for t in getattr(h, attr) for p in (*t.ingress_policies, *t.egress_policies)
                   if p in state.policies}, key=str)
    return [c for pid in pids for c in policy_chains(state.policies[pid], fam)]


def stage_chains(state: DesiredState, fam: int) -> dict[str, list[Chain]]:
    """table -> every chain of ours it should hold (an empty list: none, remove what is there)."""
    heps = hepm.active_host_endpoints(state)
    untracked, pre_dnat = hepm.with_untracked(heps), hepm.with_pre_dnat(heps)
    known = state.policies
    prefixes = state.config.interface_prefixes
    fs_in = Chain(FAILSAFE_IN, tuple(failsafe_rules(state.config.failsafe_inbound, fam, True)))
    fs_out = Chain(FAILSAFE_OUT, tuple(failsafe_rules(state.config.failsafe_outbound, fam, False)))
    out: dict[str, list[Chain]] = {"raw": [], "mangle": []}
    if untracked:
        clear = Rule("", f"-j MARK --set-xmark 0x0/{MARK_HEP_ALLOWED:#x}")
        raw = [
            hep_dispatch("cali-PREROUTING", "-i", prefixes, untracked, "cali-ui-", (clear,)),
            hep_dispatch("cali-OUTPUT", "-o", prefixes, untracked, "cali-uo-", (clear,)),
            Chain(UNTRACKED_ALLOW, (
                Rule("", f"-j MARK --set-xmark {MARK_HEP_ALLOWED:#x}/{MARK_HEP_ALLOWED:#x}"),
                Rule("", "-j CT --notrack"), Rule("", "-j ACCEPT"),
            )),
            fs_in, fs_out,
        ]
        for hep in untracked:
            for kind, inbound, fs in (("cali-ui-", True, fs_in), ("cali-uo-", False, fs_out)):
                rules = [Rule("", f"-j {fs.name}"),
                         *_stage_rules(hep.untracked_tiers, inbound, known, UNTRACKED_ALLOW, rid.Stage.UNTRACKED)]
                raw.append(Chain(hep_chain(kind, hep.iface or ""), tuple(rules)))
        out["raw"] = raw + _policies(untracked, "untracked_tiers", state, fam)
    if pre_dnat:
        head = (Rule("-m conntrack --ctstate RELATED,ESTABLISHED", "-j ACCEPT"), Rule(_HAS_MARK, "-j ACCEPT"))
        mangle = [
            hep_dispatch("cali-PREROUTING", "-i", prefixes, pre_dnat, "cali-pd-", head),
            Chain(PRE_DNAT_ALLOW, (
                Rule("", f"-j MARK --set-xmark {MARK_HEP_ALLOWED:#x}/{MARK_HEP_ALLOWED:#x}"),
                Rule("", "-j ACCEPT"),
            )),
            fs_in,
        ]
        for hep in pre_dnat:
            rules = [Rule("", f"-j {fs_in.name}"),
                     *_stage_rules(hep.pre_dnat_tiers, True, known, PRE_DNAT_ALLOW, rid.Stage.PRE_DNAT)]
            mangle.append(Chain(hep_chain("cali-pd-", hep.iface or ""), tuple(rules)))
        out["mangle"] = mangle + _policies(pre_dnat, "pre_dnat_tiers", state, fam)
    return {t: [flowlog.logged(c, state.config.flow_logs) for c in chains] for t, chains in out.items()}

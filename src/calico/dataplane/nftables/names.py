"""Names in Calico's nftables table: the table, its chains, sets and maps, and each rule's comment tag.

In: Calico ids (policy, profile, IP set ids; interface names; rule identities). Out: nft identifiers, readable
when the id is safe and short, else a hash; `rule_tag`, the comment by which read-back recognises every rule;
and `count`, a verdict rule's named counter (its identity, `calico.dataplane.ruleids`). Pure.
"""

from __future__ import annotations

import functools
import hashlib
import re

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.ruleids import RuleID

TABLE = "calico"
FAMILY = "inet"
T = f"{FAMILY} {TABLE}"  # how commands name the table

FW_MAP = "fw-dispatch"
TW_MAP = "tw-dispatch"
# 1:1 NAT (floating IPs, `nat`), per family: external -> internal, internal -> external, and the hairpin
# (internal . internal -> external).
FIP_DNAT = {4: "fip-dnat4", 6: "fip-dnat6"}
FIP_SNAT = {4: "fip-snat4", 6: "fip-snat6"}
FIP_HAIRPIN = {4: "fip-hairpin4", 6: "fip-hairpin6"}
FIP_MAPS = (*FIP_DNAT.values(), *FIP_SNAT.values(), *FIP_HAIRPIN.values())

# Fixed chains of the host endpoint dispatch, failsafes and the untracked / pre-DNAT stages.
HEP_IN = "hep-in"
HEP_OUT = "hep-out"
HEP_FWD_IN = "hep-fwd-in"
HEP_FWD_OUT = "hep-fwd-out"
FAILSAFE_IN = "failsafe-in"
FAILSAFE_OUT = "failsafe-out"
UNTRACKED_ALLOW = "untracked-allow"
PRE_DNAT_ALLOW = "pre-dnat-allow"

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_MAX_NAME = 200  # nft allows 256; leave room for prefixes


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@functools.lru_cache(maxsize=1 << 16)
def rule_tag(rule: str) -> str:
    """The comment each rule carries into the kernel: a hash of its text. nft prints rules back in its own
    spelling, but the comment verbatim, so read-back compares every rule of every chain by these."""
    return "cali:" + hashlib.blake2b(rule.encode(), digest_size=8).hexdigest()


def count(rid: RuleID) -> str:
    """The statement that counts a verdict rule's packets into the counter object named by its identity. Named
    objects (not a rule's anonymous `counter`) keep counting when the rule's chain is rewritten."""
    return f'counter name "{rid.text}"'


def ident(*parts: str) -> str:
    """A readable nft identifier from name parts, or a hash when a part is unsafe or the result too long."""
    if all(_SAFE.match(p) for p in parts):
        joined = "/".join(parts)
        if len(joined) <= _MAX_NAME:
            return joined
    return "h" + short_hash("\x00".join(parts))


def quote(text: str) -> str:
    """Quote a string for nft (our strings never contain quotes; strip them defensively)."""
    return '"' + text.replace('"', "").replace("\\", "") + '"'


def map_type(name: str) -> str:
    """A map's nft type, which its name says (as a set's does): the dispatch maps send an interface name to a
    verdict, the NAT maps an address (the hairpin map: a pair of addresses) to an address."""
    if name in (FW_MAP, TW_MAP):
        return "ifname : verdict"
    addr = "ipv6_addr" if name.endswith("6") else "ipv4_addr"
    return f"{addr} . {addr} : {addr}" if name in FIP_HAIRPIN.values() else f"{addr} : {addr}"


def is_verdict_map(name: str) -> bool:
    return name in (FW_MAP, TW_MAP)


def map_key(name: str, key: str) -> str:
    """A map key as nft reads it: interface names quoted, addresses (and their concatenations) bare."""
    return quote(key) if is_verdict_map(name) else key


def policy_chain(pid: ev.PolicyID, inbound: bool) -> str:
    parts = (pid.tier, pid.namespace, pid.name) if pid.namespace is not None else (pid.tier, pid.name)
    return ("pi-" if inbound else "po-") + ident(*parts)


def profile_chain(profile_id: str, inbound: bool) -> str:
    return ("pri-" if inbound else "pro-") + ident(profile_id)


def set_name(set_id: str, family: int, named_port: bool = False) -> str:
    return f"{'n' if named_port else 's'}{family}-{ident(set_id)}"


def fw_chain(iface: str) -> str:
    return f"fw-{iface}"


def tw_chain(iface: str) -> str:
    return f"tw-{iface}"


def hep_chain(kind: str, iface: str) -> str:
    """kind: fh (to the host), th (from the host), fhf / thf (forwarded in / out), ui / uo / pd (stages).
    "/" cannot occur in an interface name, so the wildcard endpoint's "/all" never collides with a real one."""
    return f"{kind}-" + ("/all" if iface == hepm.WILDCARD else ident(iface))

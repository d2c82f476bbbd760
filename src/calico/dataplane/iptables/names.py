"""Names of Calico's iptables chains (upstream Calico's `cali-` layout) and how they are derived.

In: Calico ids (policy, profile ids; interface names). Out: chain names of at most 28 characters (the
kernel's limit), readable when the id is safe and short, else a hash. Pure.
"""

from __future__ import annotations

import re

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.iptables.model import b64hash

CHAIN_PREFIX = "cali-"
MAX_CHAIN = 28  # kernel limit for chain names

FORWARD = "cali-FORWARD"
INPUT = "cali-INPUT"
OUTPUT = "cali-OUTPUT"
FROM_WL = "cali-from-wl-dispatch"
TO_WL = "cali-to-wl-dispatch"
WL_TO_HOST = "cali-wl-to-host"
BUILTIN_JUMPS = (("FORWARD", FORWARD), ("INPUT", INPUT), ("OUTPUT", OUTPUT))

FROM_HEP = "cali-from-host-endpoint"
TO_HEP = "cali-to-host-endpoint"
FROM_HEP_FWD = "cali-from-hep-forward"
TO_HEP_FWD = "cali-to-hep-forward"
FAILSAFE_IN = "cali-failsafe-in"
FAILSAFE_OUT = "cali-failsafe-out"
HEP_FIXED = (FROM_HEP, TO_HEP, FROM_HEP_FWD, TO_HEP_FWD, FAILSAFE_IN, FAILSAFE_OUT)
# Host endpoint policy chain prefixes by role (hostendpoints.HEP_ROLES), and their dispatch chains.
HEP_ROLE_CHAINS = {"fh": "cali-fh-", "th": "cali-th-", "fhf": "cali-fhfw-", "thf": "cali-thfw-"}
HEP_ROLE_DISPATCH = {"fh": FROM_HEP, "th": TO_HEP, "fhf": FROM_HEP_FWD, "thf": TO_HEP_FWD}
HEP_KINDS = tuple(HEP_ROLE_CHAINS.values())
NAT_PREROUTING = "cali-PREROUTING"
NAT_OUTPUT = "cali-OUTPUT"  # in the nat table (the filter table's cali-OUTPUT is another chain)
NAT_POSTROUTING = "cali-POSTROUTING"
NAT_OUTGOING = "cali-nat-outgoing"
FIP_DNAT = "cali-fip-dnat"
FIP_SNAT = "cali-fip-snat"

GROUP_PREFIXES = ("cali-pgi-", "cali-pgo-")
DISPATCH_BUCKET_PREFIXES = ("cali-fwd-", "cali-twd-")

_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def chain_id(prefix: str, *parts: str) -> str:
    """Readable id when it fits in MAX_CHAIN, otherwise "_" + hash (a readable id never starts with "_")."""
    if all(_SAFE.match(p) for p in parts) and not parts[0].startswith("_"):
        ident = "/".join(parts)
        if len(prefix) + len(ident) <= MAX_CHAIN:
            return prefix + ident
    return prefix + "_" + b64hash("\x00".join(parts), MAX_CHAIN - len(prefix) - 1)


def policy_chain(pid: ev.PolicyID, inbound: bool) -> str:
    parts = (pid.tier, pid.namespace, pid.name) if pid.namespace is not None else (pid.tier, pid.name)
    return chain_id("cali-pi-" if inbound else "cali-po-", *parts)


def profile_chain(profile_id: str, inbound: bool) -> str:
    return chain_id("cali-pri-" if inbound else "cali-pro-", profile_id)


def fw_chain(iface: str) -> str:
    return f"cali-fw-{iface}"  # ifnames are at most 15 chars: 23 <= 28


def tw_chain(iface: str) -> str:
    return f"cali-tw-{iface}"


def hep_chain(kind: str, iface: str) -> str:
    """kind: a prefix such as "cali-fh-". "/" cannot occur in an interface name, so the wildcard's "/all" cannot
    collide with a real interface's chain."""
    return kind + "/all" if iface == hepm.WILDCARD else chain_id(kind, iface)


def is_hep_chain(name: str) -> bool:
    return name in HEP_FIXED or name.startswith(HEP_KINDS)


def quote(text: str) -> str:
    return '"' + text.replace('"', "").replace("\\", "") + '"'

"""Security groups → one Calico NetworkPolicy each, with Neutron's semantics. Pure.

A group's policy selects its member ports by the group's label and allows what its rules allow; groups on one
port add up (each allowing policy ends evaluation with Allow; nothing allowed ends in the tier's default
deny). A rule that can match nothing (an address group with no address of the rule's family) is left out:
it must never widen into "any".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico.openstack import names

Doc = dict[str, Any]

# Neutron's protocol names (neutron_lib.constants.IP_PROTOCOL_MAP) as numbers; Calico names where it has them.
_PROTOCOL_NUMBERS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0,
    "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6,
    "udp": 17, "udplite": 136, "vrrp": 112,
}
_CALICO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6", 132: "SCTP", 136: "UDPLite"}
_PORTED = {"TCP", "UDP", "SCTP", "UDPLite"}


class RuleError(ValueError):
    """A Neutron rule Calico cannot express; the message names the rule."""


@dataclass(frozen=True)
class AddressGroups:
    """Address group id → its addresses (CIDRs), for `remote_address_group_id`."""

    addresses: Mapping[str, Sequence[str]]


def protocol(value: str | int | None, ethertype: str) -> str | int | None:
    """Neutron's protocol (name, number as text, or None) as a Calico protocol; `icmp` in IPv6 means ICMPv6."""
    if value is None or value in ("", "any", "0", 0):
        return None
    if isinstance(value, int) or str(value).isdigit():
        num = int(value)
    elif str(value).lower() in _PROTOCOL_NUMBERS:
        num = _PROTOCOL_NUMBERS[str(value).lower()]
    else:
        raise RuleError(f"unknown protocol {value!r}")
    if not 1 <= num <= 255:
        raise RuleError(f"protocol {value!r} out of range 1-255")
    if num == 1 and ethertype == "IPv6":
        num = 58
    return _CALICO_NAMES.get(num, num)


def _ports(lo: int | None, hi: int | None) -> list[int | str] | None:
    if lo is None and hi is None:
        return None
    lo = lo if lo is not None else hi
    hi = hi if hi is not None else lo
    assert lo is not None and hi is not None
    return [lo] if lo == hi else [f"{lo}:{hi}"]


def _family_nets(nets: Sequence[str], ethertype: str) -> list[str]:
    want = 6 if ethertype == "IPv6" else 4
    return [str(ipaddress.ip_network(n, strict=False)) for n in nets
            if ipaddress.ip_network(n, strict=False).version == want]


def rule(sg_rule: Mapping[str, Any], groups: AddressGroups | None = None) -> Doc | None:
    """One Neutron rule → a Calico Allow rule (None: the rule matches nothing and is left out)."""
    rid = sg_rule.get("id", "?")
    ethertype = sg_rule.get("ethertype") or "IPv4"
    if ethertype not in ("IPv4", "IPv6"):
        raise RuleError(f"security group rule {rid}: ethertype {ethertype!r} is neither IPv4 nor IPv6")
    out: Doc = {"action": "Allow", "ipVersion": 6 if ethertype == "IPv6" else 4}
    try:
        proto = protocol(sg_rule.get("protocol"), ethertype)
    except RuleError as exc:
        raise RuleError(f"security group rule {rid}: {exc}") from None
    lo, hi = sg_rule.get("port_range_min"), sg_rule.get("port_range_max")
    if proto is not None:
        out["protocol"] = proto
    if proto in ("ICMP", "ICMPv6"):
        if lo is not None:  # Neutron carries ICMP type and code in the port range fields
            out["icmp"] = {"type": lo} if hi is None else {"type": lo, "code": hi}
        peer: Doc = {}
        own: Doc = {}
    else:
        ports = _ports(lo, hi)
        if ports is not None and proto not in _PORTED:
            raise RuleError(f"security group rule {rid}: a port range needs tcp, udp, udplite or sctp")
        peer, own = {}, ({"ports": ports} if ports else {})
    if sg_rule.get("remote_ip_prefix"):
        peer["nets"] = _family_nets([sg_rule["remote_ip_prefix"]], ethertype) or [sg_rule["remote_ip_prefix"]]
    if sg_rule.get("remote_group_id"):
        peer["selector"] = names.sg_selector(sg_rule["remote_group_id"])
    if sg_rule.get("remote_address_group_id"):
        ag = sg_rule["remote_address_group_id"]
        nets = _family_nets((groups.addresses.get(ag, ()) if groups else ()), ethertype)
        if not nets:
            return None
        peer["nets"] = nets
    ingress = sg_rule.get("direction") == "ingress"
    if ingress:
        src, dst = peer, own
    else:
        src, dst = {}, {**own, **peer}
    if src:
        out["source"] = src
    if dst:
        out["destination"] = dst
    return out


def policy(sg: Mapping[str, Any], groups: AddressGroups | None = None, problems: list[str] | None = None) -> Doc:
    """The NetworkPolicy for security group `sg` (with its `security_group_rules`).

    A rule Calico cannot express is left out and reported in `problems`: every rule allows, so leaving one out
    only ever allows less (fail closed)."""
    ingress: list[Doc] = []
    egress: list[Doc] = []
    if sg.get("stateful") is False and problems is not None:
        # Calico has no untracked policy for workloads (doNotTrack is for host endpoints): replies to allowed
        # connections pass without rules of their own.
        problems.append(f"security group {sg['id']}: stateless groups are enforced statefully")
    for sg_rule in sorted(sg.get("security_group_rules") or (), key=lambda r: str(r.get("id"))):
        try:
            mapped = rule(sg_rule, groups)
        except RuleError as exc:
            if problems is not None:
                problems.append(f"security group {sg['id']}: {exc}")
            continue
        if mapped is not None:
            (ingress if sg_rule.get("direction") == "ingress" else egress).append(mapped)
    return {
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": names.sg_policy_name(sg["id"]), "namespace": names.NAMESPACE},
        "spec": {"selector": names.sg_selector(sg["id"]), "types": ["Ingress", "Egress"],
                 "ingress": ingress, "egress": egress},
    }


def address_group_users(sgs: Sequence[Mapping[str, Any]], address_group_id: str) -> list[str]:
    """Ids of the groups with a rule that names address group `address_group_id` (re-render them on change)."""
    return sorted({sg["id"] for sg in sgs for r in sg.get("security_group_rules") or ()
                   if r.get("remote_address_group_id") == address_group_id})

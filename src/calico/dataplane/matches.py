"""Backend-neutral facts about what a rendered rule matches, read by both firewall renderers.

In: a `calico.calculation.events.RenderedRule`, or an IP set member as the graph spells it. Out: the address
families a rule can match, whether it needs a family-specific rendering, whether it matches ports, and a
parsed named-port member. Pure; ValueError for what cannot be understood (the renderers fail closed on it).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from calico.calculation import events as ev
from calico.dataplane.protocols import implied_version, port_protocol


def families(rule: ev.RenderedRule) -> set[int]:
    """The address families (4, 6) the rule can match: limited by ipVersion, an ICMP protocol and positive nets."""
    fams = {4, 6}
    if rule.ip_version in (4, 6):
        fams &= {rule.ip_version}
    if rule.protocol is not None and (implied := implied_version(rule.protocol)) is not None:
        fams &= {implied}
    for nets in (rule.src_nets, rule.dst_nets):
        if nets:
            fams &= {ipaddress.ip_network(n, strict=False).version for n in nets}
    return fams


def family_specific(rule: ev.RenderedRule) -> bool:
    """Does the rule name anything of one family (an address, a set, an ICMP type, an IP version)? If not, one
    family-agnostic rule covers both families where the backend allows that (nftables' `inet` table)."""
    return bool(
        rule.src_nets or rule.dst_nets or rule.not_src_nets or rule.not_dst_nets
        or rule.src_ip_set_ids or rule.not_src_ip_set_ids or rule.dst_ip_set_ids or rule.not_dst_ip_set_ids
        or rule.src_named_port_set_ids or rule.not_src_named_port_set_ids
        or rule.dst_named_port_set_ids or rule.not_dst_named_port_set_ids
        or rule.icmp_type is not None or rule.not_icmp_type is not None
        or rule.ip_version in (4, 6)
    )


def has_ports(rule: ev.RenderedRule) -> bool:
    """Numeric or named ports on either side, positive or negated (Calico allows them with TCP/UDP/SCTP only)."""
    return bool(
        rule.src_ports or rule.dst_ports or rule.not_src_ports or rule.not_dst_ports
        or rule.src_named_port_set_ids or rule.dst_named_port_set_ids
        or rule.not_src_named_port_set_ids or rule.not_dst_named_port_set_ids
    )


class NamedPort(NamedTuple):
    """One member of a named-port (IP_PORT) set: "198.18.0.1,tcp:8080"."""

    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    protocol: str  # kernel name: tcp, udp, sctp
    port: int


def named_port(member: str, family: int) -> NamedPort | None:
    """The member parsed, or None when it is malformed or of the other family (it is then left out)."""
    try:
        addr, proto_port = member.split(",", 1)
        proto, port = proto_port.split(":", 1)
        ip = ipaddress.ip_address(addr.strip())
        port_n = int(port)
    except ValueError:
        return None
    protocol = port_protocol(proto)
    if ip.version != family or not 0 <= port_n <= 65535 or protocol is None:
        return None
    return NamedPort(ip, protocol, port_n)

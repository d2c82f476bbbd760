"""The Node resource this host writes, and the duplicate-address check (pure).

In: the stored Node (or None), the addresses and AS number decided at startup, and the other Nodes.
Out: the Node to store: the existing one with only `spec.bgp.ipv4Address`, `ipv6Address` and (when given)
`asNumber` replaced, every other field and label kept; and the list of conflicts, one message per other Node
already registered with one of our addresses (compared without the prefix length).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from calico.resources import API_VERSION, Node, parse_resource

__all__ = ["address_conflicts", "bgp_addresses", "desired_node"]


def bgp_addresses(node: Node | None) -> tuple[str | None, str | None]:
    bgp = node.spec.bgp if node is not None else None
    return (bgp.ipv4Address, bgp.ipv6Address) if bgp is not None else (None, None)


def desired_node(
    existing: Node | None, name: str, ipv4: str | None, ipv6: str | None, as_number: int | None
) -> Node:
    """`existing` with our BGP fields set; raises ResourceError (naming the field) on a value Calico refuses."""
    if existing is not None:
        doc: dict[str, Any] = existing.to_dict()
    else:
        doc = {"apiVersion": API_VERSION, "kind": "Node", "metadata": {"name": name}, "spec": {}}
    spec = doc.setdefault("spec", {})
    bgp = dict(spec.get("bgp") or {})
    for field, value in (("ipv4Address", ipv4), ("ipv6Address", ipv6)):
        if value:
            bgp[field] = value
        else:
            bgp.pop(field, None)
    if as_number is not None:
        bgp["asNumber"] = as_number
    if bgp:
        spec["bgp"] = bgp
    else:
        spec.pop("bgp", None)
    return parse_resource(doc)  # type: ignore[return-value]


def _ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not address:
        return None
    try:
        return ipaddress.ip_interface(address).ip
    except ValueError:
        return None


def address_conflicts(name: str, ipv4: str | None, ipv6: str | None, others: Iterable[Node]) -> list[str]:
    ours = [ip for ip in (_ip(ipv4), _ip(ipv6)) if ip is not None]
    problems = []
    for other in others:
        if other.metadata.name == name:
            continue
        for theirs in map(_ip, bgp_addresses(other)):
            if theirs is not None and theirs in ours:
                problems.append(
                    f"Node {other.metadata.name!r} is already using the IPv{theirs.version} address {theirs}"
                )
    return problems

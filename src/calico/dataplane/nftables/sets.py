"""Calico IP sets as nftables sets: one per address family, typed by its name.

In: a Calico IP set id and its members (`state.IPSet`: CIDRs / addresses, or "addr,proto:port" named ports).
Out: `NftSet`s (`s4-` / `s6-` address sets with interval flag, `n4-` / `n6-` address . protocol . port
concatenations), and the helpers the planner uses to update address sets element by element. Pure.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from calico.calculation import events as ev
from calico.dataplane.matches import named_port
from calico.dataplane.nftables.model import NftSet
from calico.dataplane.nftables.names import set_name
from calico.dataplane.state import IPSet

_SET_TYPES = {
    ("s", 4): ("ipv4_addr", True),
    ("s", 6): ("ipv6_addr", True),
    ("n", 4): ("ipv4_addr . inet_proto . inet_service", False),
    ("n", 6): ("ipv6_addr . inet_proto . inet_service", False),
}


def empty_set_for_name(name: str) -> NftSet:
    """The empty set a rule may name before (or after) its members exist; its type follows from the name."""
    kind, fam = name[0], int(name[1])
    typ, interval = _SET_TYPES[(kind, fam)]
    return NftSet(name, typ, interval, frozenset())


@functools.lru_cache(maxsize=1 << 17)
def host_element(member: str) -> tuple[int, str] | None:
    """(family, element) when `member` is one address ("198.18.0.1", "198.18.0.1/32", "fd00::1/128"), else
    None. Cached: the same endpoint addresses are looked at again on every change of the sets they are in."""
    addr, _, plen = member.strip().partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    if plen and plen != str(ip.max_prefixlen):
        return None
    return ip.version, str(ip)


def collapse(nets: Iterable[str], family: int) -> list[str]:
    """Canonical, non-overlapping CIDRs of one family (nft rejects overlapping interval elements).

    A set of single addresses (the usual selector set) is kept one element per address, never merged into
    covering prefixes, so that later deltas map one member to one element (see diff.Planner)."""
    nets = list(nets)
    hosts = [host_element(n) for n in nets]
    if all(h is not None for h in hosts):
        return sorted({h[1] for h in hosts if h is not None and h[0] == family})
    parsed = []
    for n in nets:
        try:
            net = ipaddress.ip_network(n.strip(), strict=False)
        except ValueError:
            continue  # malformed member: skip it rather than fail the whole transaction
        if net.version == family:
            parsed.append(net)
    out = []
    for net in ipaddress.collapse_addresses(parsed):  # type: ignore[type-var]
        out.append(str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net))
    return out


def hosts_only(s: NftSet) -> bool:
    """True when every element of an address set is a single address (no prefix)."""
    return s.name[0] == "s" and not any("/" in e for e in s.elements)


def canonical_host(member: str) -> tuple[int, str] | None:
    """`host_element(member)` when `member` is spelled the graph's way, "<canonical address>/32" or "/128":
    one spelling per element, so a removed member's element is gone for sure."""
    h = host_element(member)
    if h is None or member != f"{h[1]}/{32 if h[0] == 4 else 128}":
        return None
    return h


def _named_port_element(member: str, family: int) -> str | None:
    """ "198.18.0.1,tcp:8080" -> "198.18.0.1 . tcp . 8080" (None when malformed or of the other family)."""
    np = named_port(member, family)
    return None if np is None else f"{np.ip} . {np.protocol} . {np.port}"


def ipset_sets(set_id: str, ipset: IPSet) -> list[NftSet]:
    """Both per-family nft sets for one Calico IP set (both always exist, so rules never dangle)."""
    out = []
    for fam in (4, 6):
        if ipset.set_type is ev.IPSetType.NET:
            name = set_name(set_id, fam)
            elements = frozenset(collapse(ipset.members, fam))
        else:
            name = set_name(set_id, fam, named_port=True)
            elements = frozenset(e for m in ipset.members if (e := _named_port_element(m, fam)) is not None)
        base = empty_set_for_name(name)
        out.append(NftSet(name, base.type, base.interval, elements))
    return out


def all_set_names(set_id: str) -> list[str]:
    """Every nft set name a Calico IP set id can have (both families, both kinds)."""
    return [set_name(set_id, f, n) for f in (4, 6) for n in (False, True)]

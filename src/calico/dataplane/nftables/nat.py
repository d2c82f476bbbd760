"""natOutgoing in Calico's nftables table: the IP pool sets and the source-NAT chain.

In: the IP pools (`IPPoolUpdate`s) and NATOutgoingAddress. Out: four interval sets, per family every pool's
CIDR (`s4-ipam/all-pools`, `s6-...`) and the natOutgoing pools' CIDRs (`s4-ipam/masq-pools`, `s6-...`), and the
base chain `nat-postrouting` (hook postrouting, priority srcnat):

    ip saddr @s4-ipam/masq-pools ip daddr != @s4-ipam/all-pools masquerade     (snat ip to <addr> when set)
    ip6 saddr @s6-ipam/masq-pools ip6 daddr != @s6-ipam/all-pools masquerade

Traffic from a natOutgoing pool to anything outside every pool leaves with the host's address; traffic to any
pool's address keeps its source. Disabled pools count (they still route what was handed out of them). The
chain depends only on the config, so a pool change is a change of set elements and nothing else. The names hold
a "/", which no Calico IP set's nft name can (`names.ident` hashes such ids), so they never collide. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.calculation.events import IPPoolUpdate
from calico.dataplane.nftables.model import NftChain, NftSet
from calico.dataplane.nftables.sets import collapse, empty_set_for_name

NAT_CHAIN = "nat-postrouting"
ALL_POOLS = {4: "s4-ipam/all-pools", 6: "s6-ipam/all-pools"}
MASQ_POOLS = {4: "s4-ipam/masq-pools", 6: "s6-ipam/masq-pools"}
POOL_SETS = frozenset({*ALL_POOLS.values(), *MASQ_POOLS.values()})


def pool_sets(pools: Iterable[IPPoolUpdate]) -> list[NftSet]:
    pools = list(pools)
    out = []
    for fam in (4, 6):
        for name, members in (
            (ALL_POOLS[fam], [p.cidr for p in pools]),
            (MASQ_POOLS[fam], [p.cidr for p in pools if p.nat_outgoing]),
        ):
            base = empty_set_for_name(name)
            out.append(NftSet(name, base.type, base.interval, frozenset(collapse(members, fam))))
    return out


def nat_chain(nat_address: str | None) -> NftChain:
    v4_action = f"snat ip to {nat_address}" if nat_address else "masquerade"
    rules = (
        f"ip saddr @{MASQ_POOLS[4]} ip daddr != @{ALL_POOLS[4]} {v4_action}",
        f"ip6 saddr @{MASQ_POOLS[6]} ip6 daddr != @{ALL_POOLS[6]} masquerade",
    )
    return NftChain(NAT_CHAIN, rules, hook="type nat hook postrouting priority srcnat; policy accept;",
                    set_refs=POOL_SETS)

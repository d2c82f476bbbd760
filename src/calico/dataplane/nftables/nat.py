"""Calico's nat chains in its nftables table: the OpenStack metadata DNAT, 1:1 NAT (floating IPs) and
natOutgoing, with the sets and maps they look up.

In: the config (metadata target, workload interface prefixes, NATOutgoingAddress), the IP pools
(`IPPoolUpdate`s) and the local endpoints' NATs (`DesiredState.ip_nats`, settled by `dataplane.ipnat`). Out:

  sets   `s4-ipam/all-pools` (every pool's CIDR), `s4-ipam/masq-pools` (natOutgoing pools), and `s6-...`
  maps   `fip-dnat4` external -> internal, `fip-snat4` internal -> external, `fip-hairpin4`
         internal . internal -> external (and `...6`)
  nat-prerouting  (prerouting, dstnat)  workload -> 169.254.169.254:80 dnat to the metadata target (with one);
                                        dnat ip to ip daddr map @fip-dnat4   (ip6 likewise)
  nat-output      (output, -100)        dnat ip to ip daddr map @fip-dnat4   (the host's own traffic)
  nat-postrouting (postrouting, srcnat) snat ip to ip saddr . ip daddr map @fip-hairpin4
                                        ip daddr != @s4-ipam/all-pools snat ip to ip saddr map @fip-snat4
                                        ip saddr @s4-ipam/masq-pools ip daddr != @s4-ipam/all-pools masquerade
                                        (snat ip to <NATOutgoingAddress> when set; IPv6 likewise, masquerade)

A packet whose address is not in a map matches no rule (the lookup fails), so the fixed rules cost nothing
when no endpoint has a NAT. A floating IP's DNAT comes before the filter, so policy sees the internal address;
its SNAT comes before natOutgoing. Traffic from a natOutgoing pool to anything outside every pool leaves with the
host's address; traffic to any pool's address keeps its source. Disabled pools count (they still route what was
handed out of them). The chains depend only on the config: a pool change is a change of set elements, a NAT
change one of map elements, and nothing else. The set names hold a "/", which no Calico IP set's nft name can
(`names.ident` hashes such ids), so they never collide. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from calico.calculation.events import IPPoolUpdate, NATInfo, WorkloadEndpointID
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.ipnat import nat_tables
from calico.dataplane.nftables.model import NftChain, NftSet
from calico.dataplane.nftables.names import FIP_DNAT, FIP_HAIRPIN, FIP_SNAT, quote
from calico.dataplane.nftables.sets import collapse, empty_set_for_name

NAT_PREROUTING = "nat-prerouting"
NAT_OUTPUT = "nat-output"
NAT_CHAIN = "nat-postrouting"
ALL_POOLS = {4: "s4-ipam/all-pools", 6: "s6-ipam/all-pools"}
MASQ_POOLS = {4: "s4-ipam/masq-pools", 6: "s6-ipam/masq-pools"}
POOL_SETS = frozenset({*ALL_POOLS.values(), *MASQ_POOLS.values()})
_IP = {4: "ip", 6: "ip6"}


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


def nat_maps(ip_nats: Mapping[WorkloadEndpointID, tuple[NATInfo, ...]]) -> dict[str, dict[str, str]]:
    """The six floating IP maps (all of them, empty ones too: the fixed rules name them)."""
    out: dict[str, dict[str, str]] = {}
    for fam, table in nat_tables(ip_nats).items():
        out[FIP_DNAT[fam]] = dict(table.dnat)
        out[FIP_SNAT[fam]] = dict(table.snat)
        out[FIP_HAIRPIN[fam]] = {f"{internal} . {internal}": external for internal, external in table.snat.items()}
    return out


def nat_chains(config: DataplaneConfig) -> list[NftChain]:
    """The three nat base chains; they depend only on the config."""
    dnat = tuple(f"dnat {_IP[f]} to {_IP[f]} daddr map @{FIP_DNAT[f]}" for f in (4, 6))
    metadata = ()
    if (m := config.metadata) is not None:
        metadata = tuple(
            f"iifname {quote(p + '*')} ip daddr {hepm.METADATA_IP} tcp dport {hepm.METADATA_PORT} "
            f"dnat ip to {m.addr}:{m.port}"
            for p in config.interface_prefixes
        )
    v4_masq = f"snat ip to {config.nat_outgoing_address}" if config.nat_outgoing_address else "masquerade"
    post: list[str] = []
    for f in (4, 6):
        ip = _IP[f]
        post += [
            f"snat {ip} to {ip} saddr . {ip} daddr map @{FIP_HAIRPIN[f]}",
            f"{ip} daddr != @{ALL_POOLS[f]} snat {ip} to {ip} saddr map @{FIP_SNAT[f]}",
        ]
    post += [
        f"ip saddr @{MASQ_POOLS[4]} ip daddr != @{ALL_POOLS[4]} {v4_masq}",
        f"ip6 saddr @{MASQ_POOLS[6]} ip6 daddr != @{ALL_POOLS[6]} masquerade",
    ]
    return [
        NftChain(NAT_PREROUTING, (*metadata, *dnat),
                 hook="type nat hook prerouting priority dstnat; policy accept;"),
        # nft has no "dstnat" keyword at the output hook; -100 is its value.
        NftChain(NAT_OUTPUT, dnat, hook="type nat hook output priority -100; policy accept;"),
        NftChain(NAT_CHAIN, tuple(post), hook="type nat hook postrouting priority srcnat; policy accept;",
                 set_refs=POOL_SETS),
    ]

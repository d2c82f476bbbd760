"""Calico's chains in iptables' nat table: the OpenStack metadata DNAT, 1:1 NAT (floating IPs) and natOutgoing,
and the pool ipsets.

In: the `DataplaneConfig` (metadata target, workload interface prefixes, NATOutgoingAddress), a family, that
family's floating IP tables (`dataplane.ipnat.NATTable`) and the IP pools (`IPPoolUpdate`s). Out: the nat chains
of the family (written whole and read back by `side`) and the ipsets natOutgoing matches on, by Calico's names:

    PREROUTING  -> cali-PREROUTING      -j cali-fip-dnat; (IPv4, only with metadata) -i <prefix>+
                                        -d 169.254.169.254 tcp 80 DNAT to the metadata target
    OUTPUT      -> cali-OUTPUT          -j cali-fip-dnat   (the host's own traffic to a floating IP)
    POSTROUTING -> cali-POSTROUTING     -j cali-fip-snat; -j cali-nat-outgoing
    cali-fip-dnat                       -d <external> -j DNAT --to-destination <internal>   (one per NAT)
    cali-fip-snat                       -s <internal> -d <internal> -j SNAT --to-source <external>   (hairpin)
                                        -s <internal> -m set ! --match-set cali40all-ipam-pools dst
                                        -j SNAT --to-source <external>   (leaving the pools)
    cali-nat-outgoing                   -m set --match-set cali40masq-ipam-pools src
                                        -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE
                                        (-j SNAT --to-source <NATOutgoingAddress> when set; IPv6: cali60...)

`cali40all-ipam-pools` holds every pool's CIDR, `cali40masq-ipam-pools` the natOutgoing pools' (disabled pools
count: they still route what was handed out of them). A pool change is an ipset change and nothing else; a NAT
change rewrites the (small) nat table. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.calculation.events import IPPoolUpdate
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.ipnat import NATTable
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import (
    FIP_DNAT,
    FIP_SNAT,
    NAT_OUTGOING,
    NAT_OUTPUT,
    NAT_POSTROUTING,
    NAT_PREROUTING,
)

ALL_POOLS = {4: "cali40all-ipam-pools", 6: "cali60all-ipam-pools"}
MASQ_POOLS = {4: "cali40masq-ipam-pools", 6: "cali60masq-ipam-pools"}
_HOST = {4: 32, 6: 128}


def nat_chains(config: DataplaneConfig, fam: int, nats: NATTable | None = None) -> list[Chain]:
    nats = nats if nats is not None else NATTable()
    host = _HOST[fam]
    prerouting = [Rule("", f"-j {FIP_DNAT}")]
    if config.metadata is not None and fam == 4:
        m = config.metadata
        prerouting += [Rule(f"-i {p}+ -d {hepm.METADATA_IP}/32 -p tcp --dport {hepm.METADATA_PORT}",
                            f"-j DNAT --to-destination {m.addr}:{m.port}") for p in config.interface_prefixes]
    dnat = [Rule(f"-d {ext}/{host}", f"-j DNAT --to-destination {internal}")
            for ext, internal in sorted(nats.dnat.items())]
    snat = []
    for internal, ext in sorted(nats.snat.items()):
        snat += [Rule(f"-s {internal}/{host} -d {internal}/{host}", f"-j SNAT --to-source {ext}"),
                 Rule(f"-s {internal}/{host} -m set ! --match-set {ALL_POOLS[fam]} dst", f"-j SNAT --to-source {ext}")]
    action = f"-j SNAT --to-source {config.nat_outgoing_address}" if config.nat_outgoing_address and fam == 4 \
        else "-j MASQUERADE"
    match = f"-m set --match-set {MASQ_POOLS[fam]} src -m set ! --match-set {ALL_POOLS[fam]} dst"
    return [
        Chain(NAT_PREROUTING, tuple(prerouting)),
        Chain(NAT_OUTPUT, (Rule("", f"-j {FIP_DNAT}"),)),
        Chain(NAT_POSTROUTING, (Rule("", f"-j {FIP_SNAT}"), Rule("", f"-j {NAT_OUTGOING}"))),
        Chain(FIP_DNAT, tuple(dnat)),
        Chain(FIP_SNAT, tuple(snat), frozenset({ALL_POOLS[fam]})),
        Chain(NAT_OUTGOING, (Rule(match, action),), frozenset({MASQ_POOLS[fam], ALL_POOLS[fam]})),
    ]


def pool_ipsets(pools: Iterable[IPPoolUpdate]) -> list[ips.IpsetSpec]:
    pools = list(pools)
    out = []
    for fam in (4, 6):
        for name, cidrs in ((ALL_POOLS[fam], [p.cidr for p in pools]),
                            (MASQ_POOLS[fam], [p.cidr for p in pools if p.nat_outgoing])):
            out.append(ips.IpsetSpec(name, "hash:net", fam, ips.net_members(cidrs, fam)))
    return out

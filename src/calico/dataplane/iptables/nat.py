"""Calico's chains in iptables' nat table: the OpenStack metadata DNAT and natOutgoing, and the pool ipsets.

In: the `DataplaneConfig` (metadata target, workload interface prefixes, NATOutgoingAddress), a family, and the IP
pools (`IPPoolUpdate`s). Out: the nat chains of the family (written whole and read back by `side`) and the
ipsets natOutgoing matches on, by Calico's names:

    PREROUTING  -> cali-PREROUTING      (IPv4, only with metadata) -i <prefix>+ -d 169.254.169.254 tcp 80 DNAT
    POSTROUTING -> cali-POSTROUTING     -j cali-nat-outgoing
    cali-nat-outgoing                   -m set --match-set cali40masq-ipam-pools src
                                        -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE
                                        (-j SNAT --to-source <NATOutgoingAddress> when set; IPv6: cali60...)

`cali40all-ipam-pools` holds every pool's CIDR, `cali40masq-ipam-pools` the natOutgoing pools' (disabled pools
count: they still route what was handed out of them). The chains depend only on the config; a pool change is
an ipset change and nothing else. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.calculation.events import IPPoolUpdate
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import NAT_OUTGOING, NAT_POSTROUTING, NAT_PREROUTING

ALL_POOLS = {4: "cali40all-ipam-pools", 6: "cali60all-ipam-pools"}
MASQ_POOLS = {4: "cali40masq-ipam-pools", 6: "cali60masq-ipam-pools"}


def nat_chains(config: DataplaneConfig, fam: int) -> list[Chain]:
    chains = []
    if config.metadata is not None and fam == 4:
        m = config.metadata
        chains.append(Chain(NAT_PREROUTING, tuple(
            Rule(f"-i {p}+ -d {hepm.METADATA_IP}/32 -p tcp --dport {hepm.METADATA_PORT}",
                 f"-j DNAT --to-destination {m.addr}:{m.port}")
            for p in config.interface_prefixes
        )))
    action = f"-j SNAT --to-source {config.nat_outgoing_address}" if config.nat_outgoing_address and fam == 4 \
        else "-j MASQUERADE"
    match = f"-m set --match-set {MASQ_POOLS[fam]} src -m set ! --match-set {ALL_POOLS[fam]} dst"
    chains.append(Chain(NAT_POSTROUTING, (Rule("", f"-j {NAT_OUTGOING}"),)))
    chains.append(Chain(NAT_OUTGOING, (Rule(match, action),), frozenset({MASQ_POOLS[fam], ALL_POOLS[fam]})))
    return chains


def pool_ipsets(pools: Iterable[IPPoolUpdate]) -> list[ips.IpsetSpec]:
    pools = list(pools)
    out = []
    for fam in (4, 6):
        for name, cidrs in ((ALL_POOLS[fam], [p.cidr for p in pools]),
                            (MASQ_POOLS[fam], [p.cidr for p in pools if p.nat_outgoing])):
            out.append(ips.IpsetSpec(name, "hash:net", fam, ips.net_members(cidrs, fam)))
    return out

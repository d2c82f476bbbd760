"""1:1 NAT of local workloads (WorkloadEndpoint `ipNATs`, OpenStack's floating IPs), backend-neutral.

In: the local endpoints' NATs (`DesiredState.ip_nats`: endpoint id -> its `NATInfo`s). Out: per family the
two tables both firewall renderers program (`nftables.nat`, `iptables.nat`), as Calico does:

    dnat  external -> internal   prerouting and output (host-originated traffic): packets to the external
                                 address go to the workload, before the filter, so policy sees the internal one
    snat  internal -> external   postrouting: from the internal address to outside every IP pool (ahead of
                                 natOutgoing), and the hairpin (the workload to its own external address)

Conflicts are settled as the route planner settles two endpoints claiming one address: the smallest endpoint
id wins an external address, and an endpoint's earlier NAT wins over its later ones; an internal address
SNATs to the first external address it won. So every SNAT answers to a DNAT of the same pair, and the tables
are the same whatever order the events came in. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from calico.calculation.events import NATInfo, WorkloadEndpointID

FAMILIES = (4, 6)


@dataclass(frozen=True, slots=True)
class NATTable:
    """One family's tables: `dnat` external -> internal, `snat` internal -> external."""

    dnat: Mapping[str, str] = field(default_factory=dict)
    snat: Mapping[str, str] = field(default_factory=dict)


def family(addr: str) -> int:
    return 6 if ":" in addr else 4


def nat_tables(ip_nats: Mapping[WorkloadEndpointID, tuple[NATInfo, ...]]) -> dict[int, NATTable]:
    """The DNAT and SNAT tables of each family (4 and 6, both always present)."""
    dnat: dict[int, dict[str, str]] = {f: {} for f in FAMILIES}
    snat: dict[int, dict[str, str]] = {f: {} for f in FAMILIES}
    for eid in sorted(ip_nats):
        for nat in ip_nats[eid]:
            fam = family(nat.external_ip)
            if nat.external_ip in dnat[fam]:
                continue  # claimed by a smaller endpoint id, or earlier in this endpoint's list
            dnat[fam][nat.external_ip] = nat.internal_ip
            snat[fam].setdefault(nat.internal_ip, nat.external_ip)
    return {f: NATTable(dnat[f], snat[f]) for f in FAMILIES}

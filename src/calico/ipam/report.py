"""What `calicoctl ipam show` and `ipam check` print, computed from what the datastore holds (pure).

In: blocks, handles, affinities, IPPools, IPReservations, Nodes and WorkloadEndpoints, as read. Out: usage per
pool and block (`usage`), addresses borrowed from other hosts' blocks (`borrowed`), and a `CheckReport`.

How `check` decides who owns an address: a WorkloadEndpoint whose `ipNetworks` holds it, or a Node whose tunnel
address it is (`ipv4IPIPTunnelAddr`, `ipv4VXLANTunnelAddr`, `ipv6VXLANTunnelAddr`, the WireGuard interface
addresses). Problems, each counted:
- leaked: allocated in a block, owned by nothing;
- in use but not allocated (inside an enabled pool), and in use outside every enabled pool (as Calico counts);
- owned by more than one endpoint or node; allocated in two (overlapping) blocks;
- handles: records no block refers to; handles blocks refer to without a record; counts that disagree;
- blocks affine to a node that does not exist; affinities of nodes that do not exist; blocks that do not decode.
An address allocated a moment ago whose workload is not written yet looks leaked: check again before releasing
(`calicoctl ipam release --from-report` only releases addresses still held as the report saw them).
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from calico.ipam import block as blk
from calico.ipam.pools import Reservations, cidr_order, pool_network
from calico.resources import IPPool, Node, WorkloadEndpoint
from calico.resources.ipam import AllocationBlock, BlockAffinity, IPAMHandle

# --- usage ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    kind: str  # "IP Pool" or "Block"
    cidr: str
    total: int
    in_use: int
    reserved: int
    affinity: str | None = None  # blocks: the node they are affine to

    @property
    def free(self) -> int:
        return max(0, self.total - self.in_use - self.reserved)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    pool: Usage | None  # None: blocks that lie in no pool any more
    blocks: list[Usage]


def usage(pools: Sequence[IPPool], blocks: Iterable[AllocationBlock], reservations: Reservations) -> list[PoolUsage]:
    nets = sorted({pool_network(p) for p in pools}, key=lambda n: (n.version, n))
    per_pool: dict[Any, list[Usage]] = {n: [] for n in nets}
    orphans: list[Usage] = []
    for b in sorted(blocks, key=lambda b: cidr_order(b.cidr)):
        net = b.network
        row = Usage("Block", b.cidr, net.num_addresses, blk.in_use(b), len(reservations.ordinals(net)), b.host)
        owner = next((n for n in nets if n.version == net.version and net.subnet_of(n)), None)  # type: ignore[arg-type]
        (per_pool[owner] if owner is not None else orphans).append(row)
    out = []
    for n in nets:
        rows = per_pool[n]
        out.append(PoolUsage(Usage("IP Pool", str(n), n.num_addresses, sum(r.in_use for r in rows),
                                   reservations.count_in(n)), rows))
    if orphans:
        out.append(PoolUsage(None, orphans))
    return out


# --- borrowed addresses --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Borrowed:
    address: str
    borrowing_node: str
    block: str
    block_owner: str
    type: str
    allocated_to: str


def borrowed(blocks: Iterable[AllocationBlock]) -> list[Borrowed]:
    """Allocations made by a node other than the block's (or in a block no node holds)."""
    out = []
    for b in sorted(blocks, key=lambda b: cidr_order(b.cidr)):
        for o in range(len(b.allocations)):
            attr = blk.attribute_at(b, o)
            node = attr.secondary.get("node") if attr else None
            if attr is None or node is None or node == b.host:
                continue
            sec = attr.secondary
            kind = "pod" if "pod" in sec else sec.get("type", "")
            owner = f"{sec.get('namespace', '')}/{sec['pod']}" if "pod" in sec else ""
            out.append(Borrowed(str(blk.address_of(b, o)), node, b.cidr, b.host or "", kind, owner))
    return out


# --- check -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Allocation:
    block: str
    handle_id: str | None
    attributes: Mapping[str, str]
    sequence: int | None


@dataclass
class CheckReport:
    blocks: int = 0
    allocations: dict[str, list[Allocation]] = field(default_factory=dict)
    owners: dict[str, list[str]] = field(default_factory=dict)  # address -> "Workload(ns/name)" / "Node(name)"
    active_pools: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    in_use_not_allocated: list[str] = field(default_factory=list)
    not_in_pool: list[str] = field(default_factory=list)
    multiple_owners: list[str] = field(default_factory=list)
    duplicate_allocations: list[str] = field(default_factory=list)
    leaked_handles: list[str] = field(default_factory=list)
    missing_handles: list[str] = field(default_factory=list)
    handle_mismatches: list[dict[str, Any]] = field(default_factory=list)
    orphan_blocks: list[dict[str, str]] = field(default_factory=list)
    stale_affinities: list[dict[str, str]] = field(default_factory=list)
    corrupt_blocks: list[str] = field(default_factory=list)
    good_handles: int = 0

    @property
    def problems(self) -> int:
        return sum(len(x) for x in (
            self.leaked, self.in_use_not_allocated, self.not_in_pool, self.multiple_owners,
            self.duplicate_allocations, self.leaked_handles, self.missing_handles, self.handle_mismatches,
            self.orphan_blocks, self.stale_affinities, self.corrupt_blocks,
        ))

    def to_json(self, version: str) -> dict[str, Any]:
        """The `-o FILE` report."""
        return {
            "version": version,
            "problems": self.problems,
            "allocations": {ip: [asdict(a) for a in allocs] for ip, allocs in self.allocations.items()},
            "leakedIPs": [{"ip": ip, **asdict(self.allocations[ip][0])} for ip in self.leaked],
            "inUseNotAllocated": [{"ip": ip, "owners": self.owners[ip]} for ip in self.in_use_not_allocated],
            "inUseNotInPool": [{"ip": ip, "owners": self.owners[ip]} for ip in self.not_in_pool],
            "multipleOwners": [{"ip": ip, "owners": self.owners[ip]} for ip in self.multiple_owners],
            "duplicateAllocations": self.duplicate_allocations,
            "leakedHandles": self.leaked_handles,
            "missingHandles": self.missing_handles,
            "handleMismatches": self.handle_mismatches,
            "orphanBlocks": self.orphan_blocks,
            "staleAffinities": self.stale_affinities,
            "corruptBlocks": self.corrupt_blocks,
        }


def owners_of(nodes: Iterable[Node], weps: Iterable[WorkloadEndpoint]) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        spec = n.spec
        addrs = [spec.ipv4VXLANTunnelAddr, spec.ipv6VXLANTunnelAddr,
                 spec.bgp.ipv4IPIPTunnelAddr if spec.bgp else None,
                 spec.wireguard.interfaceIPv4Address if spec.wireguard else None,
                 spec.wireguard.interfaceIPv6Address if spec.wireguard else None]
        for a in addrs:
            if a:
                owners[str(ipaddress.ip_address(a))].append(f"Node({n.metadata.name})")
    for w in weps:
        for net in w.spec.ipNetworks or ():
            owners[str(ipaddress.ip_interface(net).ip)].append(f"Workload({w.metadata.namespace}/{w.metadata.name})")
    return owners


def check(
    blocks: Sequence[AllocationBlock],
    corrupt_blocks: Sequence[str],
    handles: Mapping[str, IPAMHandle],
    affinities: Iterable[tuple[str, str, BlockAffinity]],
    pools: Sequence[IPPool],
    nodes: Sequence[Node],
    weps: Sequence[WorkloadEndpoint],
) -> CheckReport:
    r = CheckReport(blocks=len(blocks), corrupt_blocks=sorted(corrupt_blocks))
    counts: Counter[tuple[str, str]] = Counter()  # (handle, block) -> addresses, as the blocks say
    for b in sorted(blocks, key=lambda b: cidr_order(b.cidr)):
        for o in range(len(b.allocations)):
            attr = blk.attribute_at(b, o)
            if attr is None:
                continue
            ip = str(blk.address_of(b, o))
            r.allocations.setdefault(ip, []).append(
                Allocation(b.cidr, attr.handle_id, dict(attr.secondary), b.seq_for_allocation.get(str(o))))
            if attr.handle_id is not None:
                counts[(attr.handle_id, b.cidr)] += 1
    r.owners = dict(owners_of(nodes, weps))
    active = [pool_network(p) for p in pools if not p.spec.disabled]
    r.active_pools = [str(n) for n in sorted(active, key=lambda n: (n.version, n))]
    r.leaked = _sorted_ips(ip for ip in r.allocations if ip not in r.owners)
    r.duplicate_allocations = _sorted_ips(ip for ip, a in r.allocations.items() if len(a) > 1)
    r.multiple_owners = _sorted_ips(ip for ip, o in r.owners.items() if len(o) > 1)
    for ip in _sorted_ips(ip for ip in r.owners if ip not in r.allocations):
        addr = ipaddress.ip_address(ip)
        inside = any(addr.version == n.version and addr in n for n in active)
        (r.in_use_not_allocated if inside else r.not_in_pool).append(ip)
    used = {h for h, _ in counts}
    r.leaked_handles = sorted(h for h in handles if h not in used)
    r.missing_handles = sorted(used - set(handles))
    r.good_handles = len(used & set(handles))
    for h in sorted(used & set(handles)):
        recorded = dict(handles[h].block)
        actual = {c: n for (hh, c), n in counts.items() if hh == h}
        if recorded != actual:
            r.handle_mismatches.append({"handle": h, "recorded": recorded, "allocated": actual})
    known = {n.metadata.name for n in nodes}
    r.orphan_blocks = [{"block": b.cidr, "node": b.host} for b in sorted(blocks, key=lambda b: cidr_order(b.cidr))
                       if b.host is not None and b.host not in known]
    r.stale_affinities = [{"node": node, "block": cidr, "state": a.state}
                          for node, cidr, a in sorted(affinities, key=lambda x: (x[0], cidr_order(x[1])))
                          if node not in known]
    return r


def _sorted_ips(ips: Iterable[str]) -> list[str]:
    return sorted(ips, key=lambda ip: (ipaddress.ip_address(ip).version, ipaddress.ip_address(ip)))

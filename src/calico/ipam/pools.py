"""Pools, blocks and reservations as arithmetic: which pools serve a request, which block an address is in, where
a free block is (pure).

In: `IPPool` and `IPReservation` resources, a node's labels, the CIDRs of blocks that exist. Out: the pools a
request may use (in order), block CIDRs, the ordinals of a block that reservations keep out of automatic
assignment, and the next unclaimed block for a host.

Pool choice follows Calico: only enabled pools of the asked IP version whose `allowedUses` include the intended
use and whose `nodeSelector` matches the node's labels. Pools the caller names (by name or CIDR) must exist and
be enabled, and still have to pass the use and node checks. Without names, every qualifying pool serves, in
CIDR order.

Free-block search: each host starts at its own place in a pool (a hash of its name), so hosts claiming blocks at
the same time rarely race for the same one, and walks the pool's blocks from there, skipping blocks that exist
and blocks entirely reserved. It takes a number of steps bounded by the existing blocks and the reservations,
never by the size of the pool (an IPv6 /48 cut into /122 blocks has 2^74 of them).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache

from calico.ipam.errors import NoUsablePool
from calico.resources import IPPool, IPReservation
from calico.resources.ipam import network
from calico.selector import Selector
from calico.selector import parse as parse_selector

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
USES = ("Workload", "Tunnel")


@lru_cache(maxsize=256)
def _selector(text: str) -> Selector:
    return parse_selector(text)


def cidr_order(cidr: str) -> tuple[int, IPNetwork]:
    """Sort key for CIDRs of both IP versions (IPv4 first, then by address)."""
    net = network(cidr)
    return net.version, net


def pool_network(pool: IPPool) -> IPNetwork:
    return network(pool.spec.cidr)


def block_size(pool: IPPool) -> int:
    assert pool.spec.blockSize is not None  # defaulted by validation
    return pool.spec.blockSize


def block_of(address: IPAddress, prefixlen: int) -> IPNetwork:
    """The block of the given size that holds the address."""
    shift = address.max_prefixlen - prefixlen
    make = ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network
    return make(((int(address) >> shift) << shift, prefixlen))


def pool_of(address: IPAddress, pools: Iterable[IPPool]) -> IPPool | None:
    for pool in pools:
        if address in pool_network(pool):
            return pool
    return None


def selects_node(pool: IPPool, labels: Mapping[str, str]) -> bool:
    return _selector(pool.spec.nodeSelector).evaluate(labels)


def needs_node_labels(pools: Iterable[IPPool]) -> bool:
    """Whether any pool's nodeSelector can tell nodes apart (so the Node must be read)."""
    return any(pool.spec.nodeSelector.strip() not in ("", "all()") for pool in pools)


def choose_pools(
    pools: Sequence[IPPool],
    version: int,
    labels: Mapping[str, str],
    use: str,
    requested: Sequence[str] | None = None,
    node: str = "",
) -> list[IPPool]:
    """The pools an automatic assignment may draw from, in the order to try them; raises NoUsablePool."""
    if use not in USES:
        raise NoUsablePool(f"intended use {use!r} is not one of {', '.join(USES)}")
    of_version = sorted((p for p in pools if pool_network(p).version == version), key=lambda p: pool_network(p))
    if requested:
        chosen = []
        for want in requested:
            pool = _find_pool(of_version, want)
            if pool is None or pool.spec.disabled:
                raise NoUsablePool(f"the requested IPv{version} pool {want!r} does not exist or is disabled")
            chosen.append(pool)
    else:
        chosen = [p for p in of_version if not p.spec.disabled]
    usable = [p for p in chosen if use in (p.spec.allowedUses or USES) and selects_node(p, labels)]
    if not usable:
        why = "none is enabled" if not chosen else f"none allows {use} addresses on node {node!r}"
        raise NoUsablePool(f"no IPv{version} IPPool can serve this request: {why}")
    return usable


def _find_pool(pools: Iterable[IPPool], want: str) -> IPPool | None:
    try:
        net: IPNetwork | None = ipaddress.ip_network(want, strict=False)
    except ValueError:
        net = None
    for pool in pools:
        if pool.metadata.name == want or (net is not None and pool_network(pool) == net):
            return pool
    return None


class Reservations:
    """The networks of every IPReservation, merged, for one IP version at a time."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        nets = [ipaddress.ip_network(c) for c in cidrs]
        self.v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
        self.v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))

    @classmethod
    def of(cls, reservations: Iterable[IPReservation]) -> Reservations:
        return cls(c for r in reservations for c in (r.spec.reservedCIDRs or ()))

    def _nets(self, version: int) -> list[IPNetwork]:
        return self.v4 if version == 4 else self.v6  # type: ignore[return-value]

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def contains(self, address: IPAddress) -> bool:
        return any(address in n for n in self._nets(address.version))

    def ordinals(self, block: IPNetwork) -> frozenset[int]:
        """The reserved ordinals of a block."""
        out: set[int] = set()
        base = int(block.network_address)
        for net in self._nets(block.version):
            if net.overlaps(block):  # type: ignore[arg-type]
                lo = max(base, int(net.network_address))
                hi = min(base + block.num_addresses, int(net.network_address) + net.num_addresses)
                out.update(range(lo - base, hi - base))
        return frozenset(out)

    def count_in(self, net: IPNetwork) -> int:
        """Reserved addresses inside a network (a pool or a block)."""
        total = 0
        for r in self._nets(net.version):
            if r.overlaps(net):  # type: ignore[arg-type]
                lo = max(int(net.network_address), int(r.network_address))
                hi = min(int(net.broadcast_address), int(r.broadcast_address))
                total += hi - lo + 1
        return total

    def covering(self, block: IPNetwork) -> IPNetwork | None:
        """A reservation holding the whole block, if any."""
        for net in self._nets(block.version):
            if block.subnet_of(net):  # type: ignore[arg-type]
                return net
        return None


def host_seed(hostname: str) -> int:
    """A stable number per host: where it starts looking for free blocks."""
    return int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:8], "big")


def free_blocks(
    pools: Sequence[IPPool], taken: Collection[str], reservations: Reservations, seed: int
) -> Iterator[IPNetwork]:
    """Unclaimed, not wholly reserved blocks of the pools (pool by pool), starting at the host's own place."""
    for pool in pools:
        yield from _free_in_pool(pool, taken, reservations, seed)


def _free_in_pool(pool: IPPool, taken: Collection[str], reservations: Reservations, seed: int) -> Iterator[IPNetwork]:
    net = pool_network(pool)
    size = block_size(pool)
    count = 1 << (size - net.prefixlen)
    step = 1 << (net.max_prefixlen - size)
    base = int(net.network_address)
    make = ipaddress.IPv4Network if net.version == 4 else ipaddress.IPv6Network
    index = seed % count
    visited = 0
    while visited < count:
        block = make((base + index * step, size))
        covering = reservations.covering(block)
        if covering is not None:
            # Jump past the whole reservation (bounded by the number of reservations, not the pool size).
            end = (int(covering.broadcast_address) + 1 - base) // step
            skip = min(end, count) - index
            visited += skip
            index = (index + skip) % count
            continue
        if str(block) not in taken:
            yield block
        visited += 1
        index = (index + 1) % count

"""Taking addresses back: by address, by handle, and everything a deleted node held (I/O, over `BlockWriter`).

In: addresses (optionally with the handle and sequence number each must still carry, as a `calicoctl ipam check`
report records them, so that an address released and handed out again since is left alone), a handle id, or a
node name. Out: what was released, and what was not allocated.

A block that ends up empty and affine to no host is deleted in the same transaction (as Calico does); an empty
block a host holds stays, ready for the host's next workload.
A deleted node loses every address whose attributes name it (`node`) or that is one of its tunnel addresses
(Calico's handles `ipip-tunnel-addr-<node>`, `vxlan-tunnel-addr-<node>`, `vxlan-v6-tunnel-addr-<node>`,
`wireguard-tunnel-addr-<node>`, `wireguard-v6-tunnel-addr-<node>`), then every block affinity it had.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from calico.ipam import block as blk
from calico.ipam.claim import release_affinity
from calico.ipam.pools import IPAddress, block_of, block_size, cidr_order, pool_of
from calico.ipam.store import Deadline, IPAMStore
from calico.ipam.write import BlockWriter, Edit
from calico.resources.ipam import AllocationAttribute, AllocationBlock, IPAMRecordError

TUNNEL_HANDLE_PREFIXES = (
    "ipip-tunnel-addr-",
    "vxlan-tunnel-addr-",
    "vxlan-v6-tunnel-addr-",
    "wireguard-tunnel-addr-",
    "wireguard-v6-tunnel-addr-",
)


def tunnel_handles(node: str) -> frozenset[str]:
    return frozenset(p + node for p in TUNNEL_HANDLE_PREFIXES)


@dataclass(frozen=True, slots=True)
class Expected:
    """What an address must still carry to be released (`--from-report`): its handle and sequence number."""

    handle_id: str | None
    sequence: int | None


@dataclass(frozen=True, slots=True)
class NodeRelease:
    addresses: list[IPAddress]
    affinities: list[str]  # block CIDRs the node let go of
    blocks_deleted: int
    problems: list[str] = field(default_factory=list)  # blocks that could not be cleaned (they do not decode)


Select = Callable[[AllocationBlock], list[int]]


def _owned_by_node(attr: AllocationAttribute | None, node: str, tunnels: frozenset[str]) -> bool:
    return attr is not None and (attr.secondary.get("node") == node or attr.handle_id in tunnels)


class Releaser:
    def __init__(self, store: IPAMStore, writer: BlockWriter) -> None:
        self.store = store
        self.writer = writer

    async def release_in_block(
        self, cidr: str, select: Select, deadline: Deadline, expected: Mapping[int, Expected] | None = None
    ) -> tuple[list[IPAddress], list[int] | None]:
        """Release the ordinals `select` picks in one block (those still as `expected`, when given).
        Returns (released addresses, ordinals that were not allocated; None when the block does not exist)."""

        def guard(o: int, attr: AllocationAttribute, seq: int | None) -> bool:
            want = (expected or {}).get(o)
            if want is None:
                return True
            return attr.handle_id == want.handle_id and want.sequence in (None, seq)

        missing: list[int] | None = None

        def edit(b: AllocationBlock) -> Edit[list[IPAddress]] | None:
            nonlocal missing
            chosen = select(b)
            before = {o: (a.handle_id, b.seq_for_allocation.get(str(o)))
                      for o in chosen if (a := blk.attribute_at(b, o)) is not None}
            done = blk.release(b, chosen, guard if expected else None)
            missing = done.not_allocated
            if not done.ordinals:
                return None
            gone = [(o, *before[o]) for o in done.ordinals]
            return Edit(
                result=[blk.address_of(b, o) for o in done.ordinals],
                handle_deltas={h: -n for h, n in done.per_handle.items()},
                # A lost answer: the release happened if none of these ordinals is still held as it was.
                applied=lambda now: now is None or not any(blk.holds(now, o, h, s) for o, h, s in gone if h),
                delete_block=blk.is_empty(b) and b.affinity is None,
            )

        _ok, released = await self.writer.edit(cidr, edit, deadline, use_cache=False)
        return released or [], missing

    async def release_ips(
        self, addresses: Iterable[IPAddress], deadline: Deadline, expected: Mapping[IPAddress, Expected] | None = None
    ) -> list[IPAddress]:
        """Release the addresses; returns those that were not allocated (or no longer as `expected`)."""
        by_block = await self._group_by_block(list(addresses), deadline)
        not_allocated: list[IPAddress] = by_block.pop(None, [])
        for cidr, addrs in by_block.items():
            assert cidr is not None
            base = int(ipaddress.ip_network(cidr).network_address)
            ords = {int(a) - base: a for a in addrs}
            exp = {o: expected[a] for o, a in ords.items() if expected and a in expected} or None
            _released, missing = await self.release_in_block(cidr, lambda _b, o=list(ords): o, deadline, exp)
            not_allocated += [ords[o] for o in (ords if missing is None else missing)]
        return not_allocated

    async def _group_by_block(
        self, addresses: list[IPAddress], deadline: Deadline
    ) -> dict[str | None, list[IPAddress]]:
        pools = await self.store.pools(deadline)
        existing: list[str] | None = None
        out: dict[str | None, list[IPAddress]] = defaultdict(list)
        for addr in dict.fromkeys(addresses):
            pool = pool_of(addr, pools)
            cidr = str(block_of(addr, block_size(pool))) if pool is not None else None
            if cidr is None or await self.store.block(cidr, deadline) is None:
                # No pool any more (or the block is of another size): find the block among those that exist.
                if existing is None:
                    existing = [b.value.cidr for b in await self.store.blocks(deadline)]
                cidr = next((c for c in existing if addr in ipaddress.ip_network(c)), None)
            out[cidr].append(addr)
        return out

    async def release_by_handle(self, handle_id: str, deadline: Deadline) -> list[IPAddress]:
        handle = await self.store.handle(handle_id, deadline)
        if handle is None:
            return []
        released: list[IPAddress] = []
        for cidr in handle.value.block:
            got, _ = await self.release_in_block(cidr, lambda b: blk.ordinals_of(b, handle_id), deadline)
            released += got
        return released

    async def release_node(self, node: str, deadline: Deadline) -> NodeRelease:
        tunnels = tunnel_handles(node)

        def owned(b: AllocationBlock) -> list[int]:
            return [o for o in range(len(b.allocations)) if _owned_by_node(blk.attribute_at(b, o), node, tunnels)]

        released: list[IPAddress] = []
        problems: list[str] = []
        entries = await self.store.block_entries(deadline)
        problems += [e.error for e in entries if e.block is None]
        blocks = [e.block for e in entries if e.block is not None]
        for b in blocks:
            if owned(b.value):
                got, _ = await self.release_in_block(b.value.cidr, owned, deadline)
                released += got
        cidrs = {a.cidr for a in await self.store.affinities(deadline, node)}
        cidrs |= {b.value.cidr for b in blocks if b.value.host == node}
        deleted = 0
        done = []
        for cidr in sorted(cidrs, key=cidr_order):
            try:
                deleted += await release_affinity(self.store, node, cidr, deadline)
                done.append(cidr)
            except IPAMRecordError as e:
                problems.append(str(e))
        return NodeRelease(released, done, deleted, problems)

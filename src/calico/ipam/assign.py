"""Handing out addresses: automatically from a host's blocks, or one chosen address (I/O, over `BlockWriter`).

In: a request (how many addresses of one IP version, for which handle, host, attributes, intended use and,
optionally, which pools). Out: the addresses allocated (fewer than asked when the pools run out: the caller
decides what to do with a partial result).

Automatic assignment, in Calico's order:
1. the host's blocks as this client last saw them (one compare-and-swap when the host's block has room);
2. a fresh look: every block of the version and this host's affinities; blocks of the host with room, pending
   claims finished (a host that stopped half way through a claim takes it up again);
3. new blocks claimed for the host (`auto_allocate_blocks`, at most `maxBlocksPerHost` when set);
4. unless strict affinity is on: addresses borrowed from other hosts' blocks, and from blocks no host holds.
Addresses in IPReservations are skipped throughout; blocks outside the chosen pools are never used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from calico.datastore.keys import ResourceKey
from calico.datastore.kv import Compare
from calico.ipam import block as blk
from calico.ipam.claim import claim
from calico.ipam.errors import AddressNotInPool, AffinityConflict, NoUsablePool, StaleContext
from calico.ipam.pools import (
    IPAddress,
    Reservations,
    block_of,
    block_size,
    choose_pools,
    free_blocks,
    host_seed,
    needs_node_labels,
    pool_network,
    pool_of,
)
from calico.ipam.store import Deadline, IPAMStore, PoolView, Versioned
from calico.ipam.write import BlockWriter, Edit
from calico.resources import IPPool
from calico.resources.ipam import (
    AFFINITY_CONFIRMED,
    AFFINITY_PENDING,
    AllocationBlock,
    IPAMConfig,
    IPAMRecordError,
    network,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    count: int
    version: int
    handle_id: str
    host: str
    attrs: Mapping[str, str]
    use: str = "Workload"
    pools: Sequence[str] | None = None


@dataclass(slots=True)
class _Context:
    pools: list[IPPool]  # the pools this request may use, in order
    reservations: Reservations
    revisions: dict[str, int]  # pool name -> mod revision when read
    fresh: bool  # read for this call (not kept from an earlier one)
    _config: IPAMConfig | None = None  # read only when the host's own blocks are not enough
    _covers: dict[str, bool] = field(default_factory=dict)

    async def config(self, store: IPAMStore, deadline: Deadline) -> IPAMConfig:
        if self._config is None:
            self._config = (await store.config(deadline)).value
        return self._config

    def pool_of(self, cidr: str) -> IPPool | None:
        """The chosen pool a block lies in."""
        net = network(cidr)
        for pool in self.pools:
            pnet = pool_network(pool)
            if net.version == pnet.version and net.subnet_of(pnet):  # type: ignore[arg-type]
                return pool
        return None

    def covers(self, cidr: str) -> bool:
        """Whether a block lies inside one of the chosen pools."""
        hit = self._covers.get(cidr)
        if hit is None:
            hit = self._covers[cidr] = self.pool_of(cidr) is not None
        return hit

    def fence(self, cidr: str) -> Compare | None:
        """The compare that makes a write to this block fail if its pool changed since it was read."""
        pool = self.pool_of(cidr)
        if pool is None:
            return None
        return Compare(ResourceKey(IPPool.PLURAL, pool.metadata.name).path(), self.revisions[pool.metadata.name])


@dataclass(slots=True)
class _Snapshot:
    view: PoolView
    labels: dict[str, Mapping[str, str]]  # node -> labels, read when some pool's nodeSelector needs them
    read_at: float


class Assigner:
    """See the module docstring. `context_ttl`: how long the pools, reservations and node labels read by one
    call serve the next ones. A write is fenced on its block's IPPool (the transaction also compares the pool's
    revision), so a pool that changes (disabled, deleted, new selector) is honoured at once; a new pool or a new
    reservation is seen within `context_ttl`, or at once when the pools seem to have no room. 0: read every call."""

    def __init__(self, store: IPAMStore, writer: BlockWriter, context_ttl: float) -> None:
        self.store = store
        self.writer = writer
        self.context_ttl = context_ttl
        self.affine: dict[tuple[str, int], list[str]] = {}  # (host, version) -> its blocks, as last seen
        self._snapshot: _Snapshot | None = None

    async def _context(self, req: Request, deadline: Deadline, fresh: bool) -> _Context:
        now = asyncio.get_running_loop().time()
        snap = self._snapshot
        if fresh or snap is None or now - snap.read_at >= self.context_ttl:
            snap = self._snapshot = _Snapshot(await self.store.pool_view(deadline), {}, now)
            fresh = True
        pools = snap.view.pools
        labels = snap.labels.get(req.host)
        if labels is None:
            labels = {}
            if needs_node_labels(pools):
                node = await self.store.node(req.host, deadline)
                labels = (node.metadata.labels or {}) if node is not None else {}
            snap.labels[req.host] = labels
        try:
            chosen = choose_pools(pools, req.version, labels, req.use, req.pools, node=req.host)
        except NoUsablePool:
            if not fresh:  # perhaps a pool appeared since the pools were read
                return await self._context(req, deadline, True)
            raise
        return _Context(chosen, snap.view.reservations, snap.view.revisions, fresh)

    # --- automatic -----------------------------------------------------------------------------------------

    async def auto_assign(self, req: Request, deadline: Deadline) -> list[IPAddress]:
        got: list[IPAddress] = []
        fresh = False
        for _attempt in range(5):
            if len(got) >= req.count:
                break
            ctx = await self._context(req, deadline, fresh)
            try:
                got += await self._assign(req, req.count - len(got), ctx, deadline)
            except StaleContext:
                fresh = True  # a pool changed under us: read the pools again and go on
                continue
            if len(got) < req.count and not ctx.fresh:
                fresh = True  # the pools as kept seem full: look again before giving up
                continue
            break
        return got

    async def _assign(self, req: Request, count: int, ctx: _Context, deadline: Deadline) -> list[IPAddress]:
        got: list[IPAddress] = []
        key = (req.host, req.version)
        full: list[str] = []
        for cidr in self.affine.get(key, []):
            # Full as last seen: skip (step 2 below looks again if the host's blocks as seen are not enough).
            if not self._has_room(self.writer.cache.blocks.get(cidr), ctx) or not ctx.covers(cidr):
                full.append(cidr)
                continue
            got += await self._from_block(cidr, req, ctx, count - len(got), deadline, affine=True)
            if len(got) == count:
                # Blocks seen full go last, so the next call does not walk past them first.
                kept = self.affine.get(key, [])
                self.affine[key] = [c for c in kept if c not in full] + [c for c in kept if c in full]
                return got
        entries, affinities = await asyncio.gather(
            self.store.block_entries(deadline, req.version), self.store.affinities(deadline, req.host)
        )
        by_cidr = {e.cidr: e for e in entries}
        mine: list[str] = []
        for aff in affinities:
            if network(aff.cidr).version != req.version or not ctx.covers(aff.cidr):
                continue
            if aff.record.state not in (AFFINITY_PENDING, AFFINITY_CONFIRMED):
                continue
            entry = by_cidr.get(aff.cidr)
            current = entry.block if entry is not None else None
            if entry is not None and current is None:
                continue  # a block that does not decode is never written to
            if current is None or aff.record.state != AFFINITY_CONFIRMED or current.value.host != req.host:
                current = await self._claim(req.host, aff.cidr, deadline)  # finish it, or drop a stale one
                if current is None:
                    continue
            self.writer.cache.blocks[aff.cidr] = current  # refresh what step 1 will use next time
            mine.append(aff.cidr)
        self.affine[key] = mine
        for cidr in mine:
            if len(got) == count:
                return got
            if self._has_room(self.writer.cache.blocks.get(cidr), ctx):
                got += await self._from_block(cidr, req, ctx, count - len(got), deadline, affine=True)
        config = await ctx.config(self.store, deadline)
        if len(got) < count and config.auto_allocate_blocks:
            got += await self._claim_and_assign(req, ctx, set(by_cidr), mine, deadline, count - len(got))
        if len(got) < count and not config.strict_affinity:
            blocks = [e.block for e in entries if e.block is not None]
            got += await self._borrow(req, ctx, blocks, deadline, count - len(got))
        return got

    async def _claim(self, host: str, cidr: str, deadline: Deadline) -> Versioned[AllocationBlock] | None:
        try:
            return await claim(self.store, host, cidr, deadline)
        except IPAMRecordError as e:
            log.warning("skipping block %s: %s", cidr, e)
            return None

    def _has_room(self, b: Versioned[AllocationBlock] | None, ctx: _Context) -> bool:
        if b is None:
            return True  # not listed: let the block write find out
        skip = ctx.reservations.ordinals(b.value.network) if ctx.reservations else ()
        return blk.free_count(b.value, skip) > 0

    async def _claim_and_assign(
        self, req: Request, ctx: _Context, taken: set[str], mine: list[str], deadline: Deadline, need: int
    ) -> list[IPAddress]:
        got: list[IPAddress] = []
        limit = (await ctx.config(self.store, deadline)).max_blocks_per_host
        for net in free_blocks(ctx.pools, taken, ctx.reservations, host_seed(req.host)):
            if limit and len(mine) >= limit:
                break
            cidr = str(net)
            claimed = await self._claim(req.host, cidr, deadline)
            if claimed is None:
                continue  # another host was quicker
            self.writer.cache.blocks[cidr] = claimed
            mine.append(cidr)
            got += await self._from_block(cidr, req, ctx, need - len(got), deadline, affine=True)
            if len(got) == need:
                break
        return got

    async def _borrow(
        self, req: Request, ctx: _Context, blocks: list[Versioned[AllocationBlock]], deadline: Deadline, need: int
    ) -> list[IPAddress]:
        others = sorted(
            (b for b in blocks if b.value.host != req.host and ctx.covers(b.value.cidr) and self._has_room(b, ctx)),
            key=lambda b: b.value.network,
        )
        if others:  # hosts borrowing at once start at different blocks
            start = host_seed(req.host) % len(others)
            others = others[start:] + others[:start]
        got: list[IPAddress] = []
        for b in others:
            got += await self._from_block(b.value.cidr, req, ctx, need - len(got), deadline, affine=False,
                                          use_cache=False)
            if len(got) == need:
                break
        return got

    async def _from_block(
        self, cidr: str, req: Request, ctx: _Context, count: int, deadline: Deadline, *, affine: bool,
        use_cache: bool = True,
    ) -> list[IPAddress]:
        def edit(b: AllocationBlock) -> Edit[list[IPAddress]] | None:
            if b.deleted or (affine and b.host != req.host):
                return None
            skip = ctx.reservations.ordinals(b.network) if ctx.reservations else ()
            ordinals = blk.allocate(b, count, req.handle_id, req.attrs, skip)
            if not ordinals:
                return None
            seq = b.sequence_number
            return Edit(
                result=[blk.address_of(b, o) for o in ordinals],
                handle_deltas={req.handle_id: len(ordinals)},
                applied=lambda now: now is not None and all(blk.holds(now, o, req.handle_id, seq, req.attrs)
                                                            for o in ordinals),
            )

        try:
            _done, result = await self.writer.edit(cidr, edit, deadline, use_cache=use_cache, fence=ctx.fence(cidr))
        except IPAMRecordError as e:  # a block that does not decode is never written to
            log.warning("skipping block %s: %s", cidr, e)
            return []
        return result or []

    # --- one chosen address --------------------------------------------------------------------------------

    async def assign_ip(
        self, address: IPAddress, handle_id: str, host: str, attrs: Mapping[str, str], use: str | None,
        deadline: Deadline,
    ) -> None:
        pools, config = await asyncio.gather(self.store.pools(deadline), self.store.config(deadline))
        pool = pool_of(address, [p for p in pools if not p.spec.disabled])
        if pool is None:
            raise AddressNotInPool(f"{address} is not in any enabled IPPool")
        if use is not None and use not in (pool.spec.allowedUses or ()):
            raise NoUsablePool(f"IPPool {pool.metadata.name} does not allow {use} addresses ({address})")
        cidr = str(block_of(address, block_size(pool)))
        strict = config.value.strict_affinity

        def edit(b: AllocationBlock) -> Edit[None]:
            if strict and b.host is not None and b.host != host:
                raise AffinityConflict(f"{address}: block {b.cidr} is affine to {b.host} and strict affinity is on")
            ordinal = blk.ordinal_of(b, address)
            assert ordinal is not None
            blk.allocate_ordinal(b, ordinal, handle_id, attrs)
            seq = b.sequence_number
            return Edit(None, {handle_id: 1},
                        lambda now: now is not None and blk.holds(now, ordinal, handle_id, seq, attrs))

        for _attempt in range(3):
            done, _ = await self.writer.edit(cidr, edit, deadline, use_cache=False)
            if done:
                return
            await claim(self.store, host, cidr, deadline)  # no block yet: claim it for this host, then retry
        raise AddressNotInPool(f"{address}: its block {cidr} could not be created")

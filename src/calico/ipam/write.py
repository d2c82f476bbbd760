"""Changing one block and the handles it affects in one compare-and-swap transaction, until it sticks (I/O).

In: a block CIDR and an edit: a function that changes a fresh copy of the block and says what it did (the
result, how many addresses each handle gained or lost, how to recognise the write afterwards). Out: the result
once a transaction `block at the revision read + each handle at the revision read -> new block + new handles`
has been applied, or None when the edit found nothing to do.

Why one transaction: the block and its handles can never disagree, not even after a crash between two writes
(Calico writes the handle first and the block second; the stored records are the same either way).

A failed compare means someone else wrote first: read again and redo the edit on what is there now. A lost
answer (the datastore went away after the request may have reached it) is resolved by reading the block:
- the block shows the write (the edit's `applied` test: e.g. the ordinals held by this handle at the sequence
  number this write gave them) -> it happened;
- the block is at another revision and does not show it -> it can never happen any more (its compare would
  fail), so redo the edit from what is there;
- the block is unchanged -> send the same transaction again: of the two, at most one can apply.
So an allocation is never counted twice and never lost: no duplicate, no leak.

`BlockCache` keeps the last block this client wrote or read per CIDR, so that a host writing its own block
(the common case) needs one round trip per change; a stale copy only costs one failed compare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from calico.datastore import keys
from calico.datastore.kv import Compare, Delete, Put, TxnOp
from calico.ipam.errors import StaleContext, TooMuchContention
from calico.ipam.store import Deadline, IPAMStore, Versioned
from calico.resources.ipam import AllocationBlock, IPAMHandle

R = TypeVar("R")

MAX_ATTEMPTS = 100  # as Calico's datastoreRetries


@dataclass(slots=True)
class Edit(Generic[R]):
    result: R
    handle_deltas: dict[str, int]  # handle id -> addresses gained (+) or lost (-) in this block
    applied: Callable[[AllocationBlock | None], bool]  # does this block (None: gone) show the write?
    delete_block: bool = False


EditFn = Callable[[AllocationBlock], "Edit[R] | None"]


@dataclass
class BlockCache:
    blocks: dict[str, Versioned[AllocationBlock]] = field(default_factory=dict)
    handles: dict[str, Versioned[IPAMHandle] | None] = field(default_factory=dict)  # None: known absent

    def forget_handles(self, handle_ids: object) -> None:
        for h in handle_ids:  # type: ignore[attr-defined]
            self.handles.pop(h, None)


class BlockWriter:
    def __init__(self, store: IPAMStore, cache: BlockCache) -> None:
        self.store = store
        self.cache = cache

    async def _fresh_block(self, cidr: str, deadline: Deadline) -> Versioned[AllocationBlock] | None:
        cur = await self.store.block(cidr, deadline)
        if cur is None:
            self.cache.blocks.pop(cidr, None)
        else:
            self.cache.blocks[cidr] = cur
        return cur

    async def _reread(
        self, cidr: str, fence: Compare | None, deadline: Deadline
    ) -> tuple[Versioned[AllocationBlock] | None, bool]:
        """The block again, and whether the fence still holds."""
        if fence is None:
            return await self._fresh_block(cidr, deadline), True
        cur, rev = await asyncio.gather(self._fresh_block(cidr, deadline),
                                        self.store.mod_revision(fence.key, deadline))
        return cur, rev == fence.mod_revision

    async def _handles(
        self, deltas: dict[str, int], fresh: bool, deadline: Deadline
    ) -> dict[str, Versioned[IPAMHandle] | None]:
        """The handles' current records. A handle that only gains addresses and that this client knows nothing of
        is taken to be new (the usual case: one handle per workload); a wrong guess costs one failed compare, then
        everything is read. A handle that loses addresses is always read: its new value depends on the old."""
        out: dict[str, Versioned[IPAMHandle] | None] = {}
        missing = []
        for h, delta in deltas.items():
            if fresh or delta < 0:
                missing.append(h)
            else:
                out[h] = self.cache.handles.get(h)
        if missing:
            got = await asyncio.gather(*(self.store.handle(h, deadline) for h in missing))
            out.update(zip(missing, got, strict=True))
        return out

    async def edit(
        self, cidr: str, fn: EditFn[R], deadline: Deadline, *, use_cache: bool = True, fence: Compare | None = None
    ) -> tuple[bool, R | None]:
        """(True, result) once applied; (False, None) when the block does not exist or `fn` has nothing to do.

        `fence`: one more compare in every transaction (the IPPool the block belongs to, at the revision the
        caller read it). When it no longer holds, StaleContext: the caller re-reads the pools and starts over."""
        bkey = keys.block_key(cidr)
        cur = self.cache.blocks.get(cidr) if use_cache else None
        if cur is None:
            cur = await self._fresh_block(cidr, deadline)
        fresh_handles = False
        uncertain: tuple[Edit[R], int] | None = None  # a write whose answer was lost, and the revision it compared
        for _attempt in range(MAX_ATTEMPTS):
            if cur is None:
                return False, None
            new = cur.value.copy()
            change = fn(new)
            if change is None:
                return False, None
            ids = sorted(change.handle_deltas)
            handles = await self._handles(change.handle_deltas, fresh_handles, deadline)
            compares = [Compare(bkey, cur.revision), *([fence] if fence else [])]
            block_op: TxnOp = Delete(bkey) if change.delete_block else Put(bkey, new.to_json())
            ops: list[TxnOp] = [block_op]
            new_handles: dict[str, IPAMHandle | None] = {}
            for h in ids:
                old = handles.get(h)
                compares.append(Compare(keys.handle_key(h), old.revision if old else 0))
                updated = (old.value if old else IPAMHandle()).adjusted(new.cidr, change.handle_deltas[h])
                if updated.block:
                    ops.append(Put(keys.handle_key(h), updated.to_json()))
                    new_handles[h] = updated
                else:  # the handle holds nothing any more (if it was absent, the compare still says so)
                    if old is not None:
                        ops.append(Delete(keys.handle_key(h)))
                    new_handles[h] = None
            ok, revision = await self.store.commit(compares, ops)
            if ok:
                if change.delete_block:
                    self.cache.blocks.pop(cidr, None)
                else:
                    self.cache.blocks[cidr] = Versioned(new, revision)
                for h, value in new_handles.items():
                    self.cache.handles[h] = None if value is None else Versioned(value, revision)
                return True, change.result
            if ok is None:
                uncertain = (change, cur.revision)
            cur, fence_holds = await self._reread(cidr, fence, deadline)
            self.cache.forget_handles(ids)
            fresh_handles = True
            if uncertain is not None:
                pending, compared_at = uncertain
                if pending.applied(cur.value if cur else None):
                    return True, pending.result
                if cur is None or cur.revision != compared_at or not fence_holds:
                    uncertain = None  # its compares can never all hold again: it did not and will not happen
            if not fence_holds:
                raise StaleContext(f"the IPPool of block {cidr} changed")
            # Otherwise redo the edit on what is there; on an unchanged block that is the same transaction.
        raise TooMuchContention(f"block {cidr} changed under every one of {MAX_ATTEMPTS} attempts")

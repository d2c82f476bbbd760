"""A host taking a block and letting it go, in Calico's steps (I/O).

Claim: (1) create the host's affinity for the block as `pending`; (2) create the block, affine to the host;
(3) set the affinity `confirmed`. Routing and advertising count only confirmed affinities, so a claim that
stops half way advertises nothing; the next claim (or assignment) by the same host picks up where it stopped.
If the block already exists and belongs to someone else, the claim lost: its pending affinity is deleted.

Release: (1) mark the affinity `pendingDeletion`; (2) delete the block when it holds no address, otherwise take
the host's affinity off it (its addresses stay allocated, now in a block nobody is affine to; with
`require_empty` the release is undone instead); (3) delete the affinity.

Every step reads what is there and does only what is still missing, so a step whose answer was lost is simply
done again: each is idempotent by its goal.
"""

from __future__ import annotations

import logging

from calico.datastore import keys
from calico.datastore.kv import Compare, Delete, Put
from calico.ipam import block as blk
from calico.ipam.errors import IPAMError, TooMuchContention
from calico.ipam.store import Affinity, Deadline, IPAMStore, Versioned
from calico.resources.ipam import (
    AFFINITY_CONFIRMED,
    AFFINITY_PENDING,
    AFFINITY_PENDING_DELETION,
    AllocationBlock,
    BlockAffinity,
    host_affinity,
)

log = logging.getLogger(__name__)

MAX_STEPS = 50


class BlockNotEmpty(IPAMError):
    """`release_affinity(require_empty=True)` found addresses still allocated in the block."""


async def claim(store: IPAMStore, node: str, cidr: str, deadline: Deadline) -> Versioned[AllocationBlock] | None:
    """Make `cidr` this node's block; the block, or None when another node holds it."""
    akey, bkey = keys.affinity_key(node, cidr), keys.block_key(cidr)
    for _step in range(MAX_STEPS):
        aff = await store.affinity(node, cidr, deadline)
        if aff is None:
            await store.create(akey, BlockAffinity(AFFINITY_PENDING).to_json())  # any answer: read again
            continue
        if aff.record.state == AFFINITY_PENDING_DELETION:
            return None  # being let go right now: not ours to use
        current = await store.block(cidr, deadline)
        if current is None:
            await store.create(bkey, AllocationBlock.empty(cidr, host_affinity(node)).to_json())
            continue
        if current.value.host != node:
            log.info("block %s is held by %s; %s drops its pending claim", cidr, current.value.affinity, node)
            await _delete_affinity(store, aff)
            return None
        if aff.record.state != AFFINITY_CONFIRMED:
            await store.commit([Compare(akey, aff.revision)],
                               [Put(akey, aff.record.with_state(AFFINITY_CONFIRMED).to_json())])
            continue
        return current
    raise TooMuchContention(f"claiming block {cidr} for {node} did not settle in {MAX_STEPS} steps")


async def _delete_affinity(store: IPAMStore, aff: Affinity) -> None:
    await store.commit([Compare(keys.affinity_key(aff.node, aff.cidr), aff.revision)],
                       [Delete(keys.affinity_key(aff.node, aff.cidr))])


async def release_affinity(
    store: IPAMStore, node: str, cidr: str, deadline: Deadline, *, require_empty: bool = False
) -> bool:
    """Let go of the node's block (see the module docstring); True when the block was deleted."""
    akey, bkey = keys.affinity_key(node, cidr), keys.block_key(cidr)
    deleted_block = False
    for _step in range(MAX_STEPS):
        aff = await store.affinity(node, cidr, deadline)
        if aff is not None and aff.record.state != AFFINITY_PENDING_DELETION:
            await store.commit([Compare(akey, aff.revision)],
                               [Put(akey, aff.record.with_state(AFFINITY_PENDING_DELETION).to_json())])
            continue
        current = await store.block(cidr, deadline)
        if current is not None and current.value.host == node:
            if blk.is_empty(current.value):
                ok, _ = await store.commit([Compare(bkey, current.revision)], [Delete(bkey)])
                deleted_block = deleted_block or ok is True
                continue
            if require_empty:
                if aff is not None:
                    await store.commit([Compare(akey, aff.revision)],
                                       [Put(akey, aff.record.with_state(AFFINITY_CONFIRMED).to_json())])
                raise BlockNotEmpty(f"block {cidr} of {node} still holds {blk.in_use(current.value)} address(es)")
            unaffine = current.value.copy()
            unaffine.affinity = None
            unaffine.sequence_number += 1
            await store.commit([Compare(bkey, current.revision)], [Put(bkey, unaffine.to_json())])
            continue
        if aff is not None:
            await _delete_affinity(store, aff)
            continue
        return deleted_block
    raise TooMuchContention(f"releasing block {cidr} of {node} did not settle in {MAX_STEPS} steps")

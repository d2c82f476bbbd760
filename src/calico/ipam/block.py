"""One block's arithmetic: ordinals and addresses, handing out and taking back (pure; edits an AllocationBlock).

In: an `AllocationBlock` (a fresh copy the caller will write back with a compare-and-swap), handles, secondary
attributes, ordinals to skip (reservations). Out: the ordinals allocated or released, how each handle's count
changed, and the block edited in place with its `sequenceNumber` bumped once per edit.

As in Calico: every address of a block can be handed out (a /26 gives 64, network and broadcast addresses
included: a block is not a subnet); free ordinals are handed out in the order of `unallocated` and released ones
go to its end, so the address idle longest is reused first; allocations that share a handle and attributes
share one `attributes` entry, and entries nobody refers to any more are dropped.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from calico.ipam.errors import AddressInUse
from calico.resources.ipam import AllocationAttribute, AllocationBlock

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def address_of(block: AllocationBlock, ordinal: int) -> IPAddress:
    return block.network[ordinal]


def ordinal_of(block: AllocationBlock, address: IPAddress) -> int | None:
    """The address's ordinal in the block, or None when it lies outside."""
    net = block.network
    if address.version != net.version:
        return None
    ordinal = int(address) - int(net.network_address)
    return ordinal if 0 <= ordinal < net.num_addresses else None


def attribute_at(block: AllocationBlock, ordinal: int) -> AllocationAttribute | None:
    index = block.allocations[ordinal]
    return None if index is None else block.attributes[index]


def in_use(block: AllocationBlock) -> int:
    return sum(1 for a in block.allocations if a is not None)


def is_empty(block: AllocationBlock) -> bool:
    return all(a is None for a in block.allocations)


def free_count(block: AllocationBlock, skip: Collection[int] = ()) -> int:
    return len(block.unallocated) if not skip else sum(1 for o in block.unallocated if o not in skip)


def ordinals_of(block: AllocationBlock, handle_id: str) -> list[int]:
    wanted = {i for i, a in enumerate(block.attributes) if a.handle_id == handle_id}
    return [o for o, a in enumerate(block.allocations) if a in wanted]


def allocate(
    block: AllocationBlock, count: int, handle_id: str, attrs: Mapping[str, str], skip: Collection[int] = ()
) -> list[int]:
    """Take up to `count` free ordinals (not in `skip`) for the handle; fewer when the block has fewer."""
    if count <= 0:
        return []
    taken: list[int] = []
    for o in block.unallocated:
        if o not in skip:
            taken.append(o)
            if len(taken) == count:
                break
    if taken:
        chosen = set(taken)
        block.unallocated = [o for o in block.unallocated if o not in chosen]
        _assign(block, taken, handle_id, attrs)
    return taken


def allocate_ordinal(block: AllocationBlock, ordinal: int, handle_id: str, attrs: Mapping[str, str]) -> None:
    """Take one given ordinal; raises AddressInUse when somebody holds it."""
    if block.allocations[ordinal] is not None:
        holder = attribute_at(block, ordinal)
        raise AddressInUse(
            f"{address_of(block, ordinal)} is already allocated in block {block.cidr} "
            f"(handle {holder.handle_id if holder else None})"
        )
    block.unallocated = [o for o in block.unallocated if o != ordinal]
    _assign(block, [ordinal], handle_id, attrs)


def _assign(block: AllocationBlock, ordinals: Sequence[int], handle_id: str, attrs: Mapping[str, str]) -> None:
    block.sequence_number += 1
    wanted = AllocationAttribute(handle_id, dict(attrs))
    try:
        index = block.attributes.index(wanted)
    except ValueError:
        index = len(block.attributes)
        block.attributes.append(wanted)
    for o in ordinals:
        block.allocations[o] = index
        block.seq_for_allocation[str(o)] = block.sequence_number


@dataclass(frozen=True, slots=True)
class Released:
    ordinals: list[int]  # released now
    not_allocated: list[int]  # asked for but free already (or refused by the guard)
    per_handle: Counter[str]  # handle id -> addresses it lost (allocations without a handle are not counted)


Guard = Callable[[int, AllocationAttribute, int | None], bool]  # (ordinal, holder, its sequence number)


def release(block: AllocationBlock, ordinals: Sequence[int], guard: Guard | None = None) -> Released:
    """Free the ordinals that are allocated (and that `guard`, when given, accepts)."""
    done: list[int] = []
    skipped: list[int] = []
    per_handle: Counter[str] = Counter()
    for o in dict.fromkeys(ordinals):
        holder = attribute_at(block, o)
        if holder is None or (guard is not None and not guard(o, holder, block.seq_for_allocation.get(str(o)))):
            skipped.append(o)
            continue
        if holder.handle_id is not None:
            per_handle[holder.handle_id] += 1
        done.append(o)
    if done:
        block.sequence_number += 1
        for o in done:
            block.allocations[o] = None
            block.seq_for_allocation.pop(str(o), None)
            block.unallocated.append(o)
        _drop_unused_attributes(block)
    return Released(done, skipped, per_handle)


def _drop_unused_attributes(block: AllocationBlock) -> None:
    used = sorted({a for a in block.allocations if a is not None})
    if len(used) == len(block.attributes):
        return
    renumber = {old: new for new, old in enumerate(used)}
    block.attributes = [block.attributes[i] for i in used]
    block.allocations = [None if a is None else renumber[a] for a in block.allocations]


def holds(
    block: AllocationBlock, ordinal: int, handle_id: str, sequence: int, attrs: Mapping[str, str] | None = None
) -> bool:
    """Whether the ordinal is allocated to the handle (with exactly `attrs`, when given) by the write that gave the
    block this sequence number: how a writer that lost the answer to its write learns whether that write happened.

    The sequence number alone is not proof: two clients that edited the same copy of a block for the same handle
    (one host retrying what another host already did for it) produce the same number, and only one of the two
    writes can apply. The attributes of one assignment call carry its own timestamp, which tells them apart."""
    holder = attribute_at(block, ordinal)
    return (
        holder is not None
        and holder.handle_id == handle_id
        and block.seq_for_allocation.get(str(ordinal)) == sequence
        and (attrs is None or dict(holder.secondary) == dict(attrs))
    )

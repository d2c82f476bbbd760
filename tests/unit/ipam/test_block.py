"""One block's arithmetic: handing out in free-list order, taking back to the end, attributes shared and pruned."""

from __future__ import annotations

import ipaddress

import pytest

from calico.ipam import block as blk
from calico.ipam.errors import AddressInUse
from calico.resources.ipam import AllocationAttribute, AllocationBlock


def new(cidr: str = "198.18.0.0/26") -> AllocationBlock:
    return AllocationBlock.empty(cidr, "host:h1")


def test_every_address_of_a_26_is_handed_out_network_and_broadcast_included() -> None:
    b = new()
    ords = blk.allocate(b, 100, "h", {"node": "h1"})
    assert ords == list(range(64))
    addrs = [blk.address_of(b, o) for o in ords]
    assert addrs[0] == ipaddress.ip_address("198.18.0.0") and addrs[-1] == ipaddress.ip_address("198.18.0.63")
    assert blk.free_count(b) == 0 and blk.in_use(b) == 64
    assert blk.allocate(b, 1, "h", {}) == []


def test_ordinals_and_addresses() -> None:
    b = new("fd00:1::40/122")
    assert blk.address_of(b, 5) == ipaddress.ip_address("fd00:1::45")
    assert blk.ordinal_of(b, ipaddress.ip_address("fd00:1::45")) == 5
    assert blk.ordinal_of(b, ipaddress.ip_address("fd00:1::80")) is None
    assert blk.ordinal_of(b, ipaddress.ip_address("198.18.0.5")) is None


def test_release_goes_to_the_end_so_the_longest_idle_is_reused_first() -> None:
    b = new()
    blk.allocate(b, 3, "a", {})
    done = blk.release(b, [1])
    assert done.ordinals == [1] and done.per_handle == {"a": 1}
    assert b.unallocated[0] == 3 and b.unallocated[-1] == 1
    assert blk.allocate(b, 1, "b", {}) == [3]


def test_skip_keeps_reserved_ordinals_free() -> None:
    b = new()
    assert blk.allocate(b, 3, "a", {}, skip={0, 2}) == [1, 3, 4]
    assert b.unallocated[:2] == [0, 2]
    assert blk.free_count(b, {0, 2}) == 59


def test_attributes_are_shared_then_pruned_and_renumbered() -> None:
    b = new()
    blk.allocate(b, 2, "a", {"pod": "x"})
    blk.allocate(b, 1, "b", {"pod": "y"})
    blk.allocate(b, 1, "a", {"pod": "x"})
    assert b.attributes == [AllocationAttribute("a", {"pod": "x"}), AllocationAttribute("b", {"pod": "y"})]
    assert b.allocations[:4] == [0, 0, 1, 0]
    done = blk.release(b, blk.ordinals_of(b, "a"))
    assert sorted(done.ordinals) == [0, 1, 3] and done.per_handle == {"a": 3}
    assert b.attributes == [AllocationAttribute("b", {"pod": "y"})] and b.allocations[2] == 0
    assert blk.ordinals_of(b, "b") == [2]


def test_sequence_numbers_tell_writes_apart() -> None:
    b = new()
    blk.allocate(b, 1, "a", {})
    first = b.sequence_number
    blk.allocate(b, 1, "a", {})
    assert b.sequence_number == first + 1
    assert blk.holds(b, 0, "a", first) and not blk.holds(b, 0, "a", first + 1)
    assert blk.holds(b, 1, "a", first + 1) and not blk.holds(b, 1, "b", first + 1)
    blk.release(b, [0])
    assert not blk.holds(b, 0, "a", first) and "0" not in b.seq_for_allocation


def test_allocate_one_ordinal() -> None:
    b = new()
    blk.allocate_ordinal(b, 10, "a", {})
    assert 10 not in b.unallocated and blk.attribute_at(b, 10) == AllocationAttribute("a", {})
    with pytest.raises(AddressInUse, match=r"198\.18\.0\.10 is already allocated in block 198\.18\.0\.0/26 \(handle a\)"):
        blk.allocate_ordinal(b, 10, "b", {})


def test_release_of_free_ordinals_and_guard() -> None:
    b = new()
    blk.allocate(b, 2, "a", {})
    seq = b.sequence_number
    done = blk.release(b, [1, 5], guard=lambda o, attr, s: s == seq + 99)
    assert done.ordinals == [] and done.not_allocated == [1, 5]
    assert b.sequence_number == seq  # nothing changed: no write needed
    done = blk.release(b, [1, 5], guard=lambda o, attr, s: attr.handle_id == "a" and s == seq)
    assert done.ordinals == [1] and done.not_allocated == [5]
    assert blk.is_empty(b) is False and blk.in_use(b) == 1


def test_allocation_without_handle_is_not_counted() -> None:
    b = AllocationBlock.from_json("/k", b'{"cidr":"198.18.0.0/31","affinity":null,"allocations":[0,null],'
                                        b'"unallocated":[1],"attributes":[{"handle_id":null,"secondary":null}]}')
    done = blk.release(b, [0])
    assert done.ordinals == [0] and not done.per_handle and blk.is_empty(b)

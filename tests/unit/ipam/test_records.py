"""IPAM's stored records: libcalico-go's JSON in and out, unknown fields kept, bad values named."""

from __future__ import annotations

import json

import pytest

from calico.resources import IPReservation, ResourceError, parse_resource
from calico.resources.ipam import (
    AllocationAttribute,
    AllocationBlock,
    BlockAffinity,
    IPAMConfig,
    IPAMHandle,
    IPAMRecordError,
    host_affinity,
)

KEY = "/calico/ipam/v2/assignment/ipv4/block/198.18.0.0-30"

# A block as libcalico-go writes it (field order and spelling from its AllocationBlock), plus a field we do not know.
CALICO_BLOCK = {
    "cidr": "198.18.0.0/30",
    "affinity": "host:node-1",
    "allocations": [0, None, 0, None],
    "unallocated": [3, 1],
    "attributes": [{"handle_id": "k8s-pod-network.abc", "secondary": {"node": "node-1", "pod": "web"}}],
    "sequenceNumber": 7,
    "sequenceNumberForAllocation": {"0": 5, "2": 6},
    "deleted": False,
    "affinityClaimTime": "2026-01-01T00:00:00Z",
}


def test_block_from_calico_json() -> None:
    b = AllocationBlock.from_json(KEY, json.dumps(CALICO_BLOCK))
    assert b.cidr == "198.18.0.0/30"
    assert b.host == "node-1"
    assert b.allocations == [0, None, 0, None]
    assert b.unallocated == [3, 1]
    assert b.attributes == [AllocationAttribute("k8s-pod-network.abc", {"node": "node-1", "pod": "web"})]
    assert b.sequence_number == 7
    assert b.seq_for_allocation == {"0": 5, "2": 6}
    assert b.strict_affinity is False  # older blocks have it, newer ones do not: absent means false


def test_block_round_trip_keeps_unknown_fields() -> None:
    b = AllocationBlock.from_json(KEY, json.dumps(CALICO_BLOCK))
    out = json.loads(b.to_json())
    assert out["affinityClaimTime"] == "2026-01-01T00:00:00Z"
    assert {k: out[k] for k in CALICO_BLOCK} == CALICO_BLOCK
    assert AllocationBlock.from_json(KEY, b.to_json()) == b


def test_copy_is_independent() -> None:
    b = AllocationBlock.from_json(KEY, json.dumps(CALICO_BLOCK))
    c = b.copy()
    c.allocations[1] = 0
    c.unallocated.pop()
    c.seq_for_allocation["1"] = 9
    assert b.allocations[1] is None and b.unallocated == [3, 1] and "1" not in b.seq_for_allocation


def test_empty_block_hands_out_every_address() -> None:
    b = AllocationBlock.empty("198.18.0.0/26", host_affinity("h1"))
    assert len(b.allocations) == 64 and b.unallocated == list(range(64))
    assert b.affinity == "host:h1" and b.host == "h1"
    assert AllocationBlock.empty("fd00:1::/122", None).network.num_addresses == 64


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"cidr": "not-a-net"}, "cidr"),
        ({"allocations": [0, None]}, "allocations must be a list of 4"),
        ({"allocations": [3, None, None, None]}, "allocations[0] = 3 does not index attributes"),
        ({"unallocated": [3, 3]}, "unallocated[1] = 3"),
        ({"unallocated": [0]}, "ordinal 0 is both allocated and listed as unallocated"),
        ({"unallocated": [9]}, "unallocated[0] = 9"),
        ({"attributes": [{"handle_id": 5}]}, "attributes[0].handle_id"),
        ({"sequenceNumber": -1}, "sequenceNumber"),
        ({"affinity": 3}, "affinity"),
        ({"deleted": "no"}, "deleted"),
    ],
)
def test_bad_block_names_key_and_field(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(IPAMRecordError) as info:
        AllocationBlock.from_json(KEY, json.dumps({**CALICO_BLOCK, **change}))
    assert KEY in str(info.value) and fragment in str(info.value)


def test_not_json() -> None:
    with pytest.raises(IPAMRecordError, match="not JSON"):
        AllocationBlock.from_json(KEY, b"{nope")
    with pytest.raises(IPAMRecordError, match="not a JSON object"):
        IPAMHandle.from_json("/k", b"[]")


def test_affinity() -> None:
    a = BlockAffinity.from_json("/k", b'{"state":"pending","deleted":false}')
    assert not a.confirmed
    c = a.with_state("confirmed")
    assert c.confirmed and json.loads(c.to_json()) == {"state": "confirmed", "deleted": False}
    with pytest.raises(IPAMRecordError, match="state 'claimed'"):
        BlockAffinity.from_json("/k", b'{"state":"claimed"}')


def test_handle_counts() -> None:
    h = IPAMHandle.from_json("/calico/ipam/v2/handle/x", b'{"block":{"198.18.0.0/26":2},"deleted":false}')
    assert h.total == 2
    h2 = h.adjusted("198.18.0.0/26", -2).adjusted("198.18.0.64/26", 1)
    assert h2.block == {"198.18.0.64/26": 1}
    assert json.loads(h2.to_json()) == {"block": {"198.18.0.64/26": 1}, "deleted": False}
    with pytest.raises(IPAMRecordError, match="block must map"):
        IPAMHandle.from_json("/k", b'{"block":{"a":-1}}')


def test_config_as_go_writes_it() -> None:
    assert IPAMConfig() == IPAMConfig(strict_affinity=False, auto_allocate_blocks=True, max_blocks_per_host=0)
    # Go's omitempty: a false field is left out, and an absent field reads as false.
    assert json.loads(IPAMConfig(strict_affinity=True).to_json()) == {"strict_affinity": True,
                                                                      "auto_allocate_blocks": True}
    assert IPAMConfig.from_json("/k", b'{"strict_affinity":true}') == IPAMConfig(True, False, 0)
    cfg = IPAMConfig.from_json("/k", b'{"auto_allocate_blocks":true,"maxBlocksPerHost":4}')
    assert cfg.max_blocks_per_host == 4 and IPAMConfig.from_json("/k", cfg.to_json()) == cfg
    with pytest.raises(IPAMRecordError, match="maxBlocksPerHost"):
        IPAMConfig.from_json("/k", b'{"maxBlocksPerHost":"x"}')


def test_ipreservation_kind() -> None:
    res = parse_resource({
        "apiVersion": "projectcalico.org/v3", "kind": "IPReservation", "metadata": {"name": "r1"},
        "spec": {"reservedCIDRs": ["198.18.2.3", "198.18.0.7/24", "fd00:2::/123"]},
    })
    assert isinstance(res, IPReservation)
    assert res.spec.reservedCIDRs == ["198.18.2.3/32", "198.18.0.0/24", "fd00:2::/123"]
    with pytest.raises(ResourceError) as info:
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPReservation", "metadata": {"name": "r"},
                        "spec": {"reservedCIDRs": ["nope"]}})
    assert "IPReservation(r)" in str(info.value) and "spec.reservedCIDRs[0]" in str(info.value)

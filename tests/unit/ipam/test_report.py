"""`ipam show` usage, borrowed addresses and the `ipam check` report, from records built in memory."""

from __future__ import annotations

from typing import Any

from calico.ipam import block as blk
from calico.ipam.pools import Reservations
from calico.ipam.report import borrowed, check, usage
from calico.resources import IPPool, Node, WorkloadEndpoint, parse_resource
from calico.resources.ipam import AllocationBlock, BlockAffinity, IPAMHandle


def res(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> Any:
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind,
                           "metadata": {"name": name, **meta}, "spec": spec})


POOL: IPPool = res("IPPool", "p", {"cidr": "198.18.0.0/24"})
OFF: IPPool = res("IPPool", "off", {"cidr": "198.18.9.0/24", "disabled": True})


def wep(name: str, *ips: str, node: str = "h1") -> WorkloadEndpoint:
    return res("WorkloadEndpoint", name, {"node": node, "interfaceName": f"cali{name}", "ipNetworks": list(ips)},
               namespace="default")


def node(name: str, **spec: Any) -> Node:
    return res("Node", name, spec)


def block_with(cidr: str, host: str | None, *allocs: tuple[str, int, str]) -> AllocationBlock:
    b = AllocationBlock.empty(cidr, f"host:{host}" if host else None)
    for handle, n, by in allocs:
        blk.allocate(b, n, handle, {"node": by, "namespace": "default", "pod": handle})
    return b


def test_usage_per_pool_and_block_with_reservations_and_orphans() -> None:
    b1 = block_with("198.18.0.0/26", "h1", ("a", 3, "h1"))
    b2 = block_with("198.18.0.64/26", "h2", ("b", 1, "h2"))
    lost = block_with("10.9.0.0/26", None, ("c", 2, "h3"))
    out = usage([POOL], [b2, b1, lost], Reservations(["198.18.0.0/30"]))
    pool_row = out[0].pool
    assert pool_row is not None and (pool_row.cidr, pool_row.total, pool_row.in_use, pool_row.reserved) == (
        "198.18.0.0/24", 256, 4, 4)
    assert pool_row.free == 248
    assert [(r.cidr, r.affinity, r.in_use, r.reserved, r.free) for r in out[0].blocks] == [
        ("198.18.0.0/26", "h1", 3, 4, 57), ("198.18.0.64/26", "h2", 1, 0, 63)]
    assert out[1].pool is None and [r.cidr for r in out[1].blocks] == ["10.9.0.0/26"]


def test_borrowed() -> None:
    b = block_with("198.18.0.0/26", "h1", ("own", 1, "h1"), ("guest", 1, "h2"))
    free = block_with("198.18.0.64/26", None, ("x", 1, "h3"))
    rows = borrowed([b, free])
    assert [(r.address, r.borrowing_node, r.block_owner, r.type, r.allocated_to) for r in rows] == [
        ("198.18.0.1", "h2", "h1", "pod", "default/guest"), ("198.18.0.64", "h3", "", "pod", "default/x")]


def test_clean_report() -> None:
    b = block_with("198.18.0.0/26", "h1", ("w1", 1, "h1"), ("vxlan-tunnel-addr-h1", 1, "h1"))
    handles = {"w1": IPAMHandle({"198.18.0.0/26": 1}), "vxlan-tunnel-addr-h1": IPAMHandle({"198.18.0.0/26": 1})}
    r = check([b], [], handles, [("h1", "198.18.0.0/26", BlockAffinity("confirmed"))], [POOL],
              [node("h1", ipv4VXLANTunnelAddr="198.18.0.1")], [wep("w1", "198.18.0.0/32")])
    assert r.problems == 0, r.to_json("t")
    assert r.good_handles == 2 and r.owners["198.18.0.1"] == ["Node(h1)"]
    assert r.owners["198.18.0.0"] == ["Workload(default/w1)"]


def test_every_kind_of_problem_is_found() -> None:
    b = block_with("198.18.0.0/26", "gone", ("leak", 1, "gone"), ("w1", 2, "h1"), ("nohandle", 1, "h1"))
    overlap = block_with("198.18.0.0/28", "h1", ("dup", 1, "h1"))
    handles = {
        "leak": IPAMHandle({"198.18.0.0/26": 1}),
        "w1": IPAMHandle({"198.18.0.0/26": 1}),  # the block says 2
        "dup": IPAMHandle({"198.18.0.0/28": 1}),
        "stale": IPAMHandle({"198.18.0.0/26": 1}),
    }
    weps = [wep("w1", "198.18.0.1/32"), wep("w1b", "198.18.0.2/32"), wep("also", "198.18.0.1/32"),
            wep("ghost", "198.18.0.50/32"), wep("outside", "10.1.1.1/32"), wep("dup", "198.18.0.3/32"),
            wep("off", "198.18.9.9/32")]
    affinities = [("gone", "198.18.0.0/26", BlockAffinity("confirmed")), ("h1", "198.18.0.0/28", BlockAffinity("confirmed"))]
    r = check([b, overlap], ["/calico/ipam/v2/assignment/ipv4/block/bad: not JSON"], handles, affinities,
              [POOL, OFF], [node("h1")], weps)
    assert r.leaked == ["198.18.0.0"]  # "leak" holds it, nothing owns it
    assert r.duplicate_allocations == ["198.18.0.0"]  # in both overlapping blocks
    assert r.multiple_owners == ["198.18.0.1"]
    assert r.in_use_not_allocated == ["198.18.0.50"]
    assert r.not_in_pool == ["10.1.1.1", "198.18.9.9"]  # outside every pool, or in a disabled one
    assert r.leaked_handles == ["stale"]
    assert r.missing_handles == ["nohandle"]
    assert r.handle_mismatches == [{"handle": "w1", "recorded": {"198.18.0.0/26": 1}, "allocated": {"198.18.0.0/26": 2}}]
    assert r.orphan_blocks == [{"block": "198.18.0.0/26", "node": "gone"}]
    assert r.stale_affinities == [{"node": "gone", "block": "198.18.0.0/26", "state": "confirmed"}]
    assert r.corrupt_blocks and r.problems == 12
    doc = r.to_json("v9")
    assert doc["version"] == "v9" and doc["problems"] == 12
    assert doc["leakedIPs"] == [{"ip": "198.18.0.0", "block": "198.18.0.0/26", "handle_id": "leak",
                                 "attributes": {"node": "gone", "namespace": "default", "pod": "leak"},
                                 "sequence": 1}]

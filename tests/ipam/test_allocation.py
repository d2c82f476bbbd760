"""IPAM against both real datastores (embedded SQLite and etcd): blocks, affinities, borrowing, strict affinity,
reservations, pool rules, chosen addresses, releases, configuration."""

from __future__ import annotations

import asyncio
import ipaddress
import json

import pytest

from calico.datastore import keys
from calico.ipam import (
    AddressesExhausted,
    AddressInUse,
    AddressNotInPool,
    AffinityConflict,
    AutoAssignArgs,
    InvalidConfig,
    NoUsablePool,
)
from calico.resources.ipam import IPAMConfig
from tests.ipam.util import World, allocations


def args(n4: int = 1, n6: int = 0, handle: str = "w1", host: str = "h1", **kw: object) -> AutoAssignArgs:
    return AutoAssignArgs(num4=n4, num6=n6, handle_id=handle, hostname=host, **kw)  # type: ignore[arg-type]


async def test_first_assignment_claims_a_block_in_calicos_layout(world: World) -> None:
    await world.pool("v4", "198.18.0.0/24")
    await world.pool("v6", "fd00:1::/120")
    got = await world.ipam.auto_assign(args(2, 1, attrs={"namespace": "default", "pod": "w1"}))
    assert len(got.ipv4) == 2 and len(got.ipv6) == 1
    b4 = ipaddress.ip_network(f"{got.ipv4[0]}/26", strict=False)
    b6 = ipaddress.ip_network(f"{got.ipv6[0]}/122", strict=False)
    assert got.ipv4[1] in b4 and b4.subnet_of(ipaddress.ip_network("198.18.0.0/24"))
    aff = await world.kv.get(f"/calico/ipam/v2/host/h1/ipv4/block/{b4.network_address}-26")
    assert aff is not None and json.loads(aff.value) == {"state": "confirmed", "deleted": False}
    assert await world.kv.get(keys.affinity_key("h1", str(b6))) is not None
    block = await world.kv.get(f"/calico/ipam/v2/assignment/ipv4/block/{b4.network_address}-26")
    assert block is not None
    doc = json.loads(block.value)
    [attr] = doc["attributes"]
    stamp = attr["secondary"].pop("timestamp")  # when, as Calico's CNI plugin records it
    assert doc["affinity"] == "host:h1" and attr == {
        "handle_id": "w1", "secondary": {"node": "h1", "namespace": "default", "pod": "w1"}}
    assert stamp.endswith(" +0000 UTC") and len(stamp) == len("2026-01-02 03:04:05.123456789 +0000 UTC")
    handle = await world.kv.get("/calico/ipam/v2/handle/w1")
    assert handle is not None and json.loads(handle.value) == {"block": {str(b4): 2, str(b6): 1}, "deleted": False}
    assert await allocations(world.kv) == {str(a): "w1" for a in [*got.ipv4, *got.ipv6]}


async def test_a_full_block_makes_the_host_claim_another(world: World) -> None:
    await world.pool("p", "198.18.0.0/24")
    first = await world.ipam.auto_assign(args(60, handle="a"))
    more = await world.ipam.auto_assign(args(10, handle="b"))
    blocks = {ipaddress.ip_network(f"{a}/26", strict=False) for a in [*first.ipv4, *more.ipv4]}
    assert len(blocks) == 2
    affs, _ = await world.kv.list(keys.host_affinity_prefix("h1"))
    assert len(affs) == 2
    assert len(await allocations(world.kv)) == 70


async def test_borrowing_when_the_pool_has_no_free_block_and_not_with_strict_affinity(world: World) -> None:
    await world.pool("p", "198.18.0.0/25")  # two blocks
    a = await world.ipam.auto_assign(args(1, handle="a", host="h1"))
    b = await world.ipam.auto_assign(args(1, handle="b", host="h2"))
    assert ipaddress.ip_network(f"{a.ipv4[0]}/26", strict=False) != ipaddress.ip_network(f"{b.ipv4[0]}/26", strict=False)
    borrowed = await world.ipam.auto_assign(args(1, handle="c", host="h3"))
    owner = {str(ipaddress.ip_network(f"{x}/26", strict=False)): h for x, h in ((a.ipv4[0], "h1"), (b.ipv4[0], "h2"))}
    assert owner[str(ipaddress.ip_network(f"{borrowed.ipv4[0]}/26", strict=False))] in ("h1", "h2")
    assert [r.borrowing_node for r in await world.ipam.borrowed()] == ["h3"]
    assert (await world.ipam.assignment(borrowed.ipv4[0])).attributes["node"] == "h3"  # type: ignore[union-attr]

    await world.ipam.set_config(IPAMConfig(strict_affinity=True))
    with pytest.raises(AddressesExhausted, match="assigned 0 of 1 requested IPv4 addresses for d on h4"):
        await world.ipam.auto_assign(args(1, handle="d", host="h4"))
    assert await world.kv.get(keys.handle_key("d")) is None
    # h1 still fills its own block under strict affinity
    assert (await world.ipam.auto_assign(args(1, handle="e", host="h1"))).ipv4


async def test_all_or_nothing_when_the_pools_run_dry(world: World) -> None:
    await world.pool("p", "198.18.0.0/26")
    await world.pool("v6", "fd00:1::/122")
    with pytest.raises(AddressesExhausted, match="assigned 64 of 65"):
        await world.ipam.auto_assign(args(65, handle="big"))
    assert await allocations(world.kv) == {}
    await world.pool("v6", "fd00:1::/122", disabled=True)
    with pytest.raises(NoUsablePool, match="IPv6"):
        await world.ipam.auto_assign(args(1, 1, handle="both"))
    assert await allocations(world.kv) == {}  # the IPv4 address of the failed call was given back


async def test_reservations_are_never_handed_out_automatically(world: World) -> None:
    await world.pool("p", "198.18.0.0/26")
    await world.reserve("r", "198.18.0.0/30", "198.18.0.9", "198.18.0.32/27")
    got = await world.ipam.auto_assign(args(27, handle="a"))
    assert sorted(int(a) & 63 for a in got.ipv4) == sorted({*range(4, 32)} - {9})
    with pytest.raises(AddressesExhausted):
        await world.ipam.auto_assign(args(1, handle="b"))
    # As in Calico, an address asked for by name is not checked against reservations.
    await world.ipam.assign_ip("198.18.0.9", handle_id="pinned", hostname="h1")
    usage = await world.ipam.usage()
    assert usage[0].pool is not None and (usage[0].pool.in_use, usage[0].pool.reserved) == (28, 37)


async def test_a_wholly_reserved_block_is_never_claimed(world: World) -> None:
    await world.pool("p", "198.18.0.0/25")
    await world.reserve("r", "198.18.0.0/26")
    for i in range(3):
        got = await world.ipam.auto_assign(args(1, handle=f"w{i}", host=f"h{i}"))
        assert got.ipv4[0] in ipaddress.ip_network("198.18.0.64/26")
    blocks, _ = await world.kv.list(keys.block_prefix())
    assert [b.key for b in blocks] == ["/calico/ipam/v2/assignment/ipv4/block/198.18.0.64-26"]


async def test_pools_honour_node_selector_disabled_and_allowed_uses(world: World) -> None:
    await world.pool("rack1", "198.18.1.0/24", nodeSelector="rack == 'r1'")
    await world.pool("other", "198.18.2.0/24", nodeSelector="rack != 'r1'")
    await world.pool("off", "198.18.3.0/24", disabled=True)
    await world.pool("tunnels", "198.18.4.0/24", allowedUses=["Tunnel"])
    await world.node("n1", {"rack": "r1"})
    await world.node("n2", {"rack": "r2"})
    a = await world.ipam.auto_assign(args(1, handle="a", host="n1"))
    b = await world.ipam.auto_assign(args(1, handle="b", host="n2"))
    c = await world.ipam.auto_assign(args(1, handle="vxlan-tunnel-addr-n1", host="n1", intended_use="Tunnel"))
    assert a.ipv4[0] in ipaddress.ip_network("198.18.1.0/24")
    assert b.ipv4[0] in ipaddress.ip_network("198.18.2.0/24")
    assert c.ipv4[0] in ipaddress.ip_network("198.18.1.0/24")  # rack1 allows both uses and comes first
    t = await world.ipam.auto_assign(args(1, handle="t", host="n2", intended_use="Tunnel", ipv4_pools=["tunnels"]))
    assert t.ipv4[0] in ipaddress.ip_network("198.18.4.0/24")
    with pytest.raises(NoUsablePool, match="'off' does not exist or is disabled"):
        await world.ipam.auto_assign(args(1, handle="x", host="n1", ipv4_pools=["off"]))
    with pytest.raises(NoUsablePool, match="none allows Workload"):
        await world.ipam.auto_assign(args(1, handle="x", host="n1", ipv4_pools=["198.18.4.0/24"]))
    with pytest.raises(NoUsablePool):
        await world.ipam.auto_assign(args(1, handle="x", host="n2", ipv4_pools=["rack1"]))
    # A node that does not exist has no labels: only pools selecting all nodes (or !=) serve it.
    d = await world.ipam.auto_assign(args(1, handle="d", host="ghost"))
    assert d.ipv4[0] in ipaddress.ip_network("198.18.2.0/24")


async def test_assign_ip(world: World) -> None:
    await world.pool("p", "198.18.0.0/24", allowedUses=["Workload"])
    await world.ipam.assign_ip("198.18.0.77", handle_id="a", hostname="h1", attrs={"pod": "a"})
    got = await world.ipam.assignment("198.18.0.77")
    assert got is not None and (got.block, got.block_affinity, got.handle_id) == ("198.18.0.64/26", "host:h1", "a")
    assert {k: v for k, v in got.attributes.items() if k != "timestamp"} == {"node": "h1", "pod": "a"}
    with pytest.raises(AddressInUse, match=r"198\.18\.0\.77 is already allocated"):
        await world.ipam.assign_ip("198.18.0.77", handle_id="b", hostname="h1")
    with pytest.raises(AddressNotInPool):
        await world.ipam.assign_ip("198.19.0.1", handle_id="b", hostname="h1")
    with pytest.raises(NoUsablePool, match="does not allow Tunnel"):
        await world.ipam.assign_ip("198.18.0.5", handle_id="b", hostname="h1", intended_use="Tunnel")
    # Someone else's block: allowed (a borrowed address) unless strict affinity is on.
    await world.ipam.assign_ip("198.18.0.78", handle_id="c", hostname="h2")
    await world.ipam.set_config(IPAMConfig(strict_affinity=True))
    with pytest.raises(AffinityConflict):
        await world.ipam.assign_ip("198.18.0.79", handle_id="d", hostname="h2")
    assert await allocations(world.kv) == {"198.18.0.77": "a", "198.18.0.78": "c"}
    # The host's next automatic address comes from the block assign_ip claimed.
    auto = await world.ipam.auto_assign(args(1, handle="e", host="h1"))
    assert auto.ipv4[0] in ipaddress.ip_network("198.18.0.64/26")


async def test_releases(world: World) -> None:
    await world.pool("p", "198.18.0.0/24")
    a = await world.ipam.auto_assign(args(3, handle="a"))
    b = await world.ipam.auto_assign(args(1, handle="b"))
    assert sorted(await world.ipam.ips_by_handle("a")) == sorted(a.ipv4)
    not_allocated = await world.ipam.release_ips([a.ipv4[0], "198.18.0.250", "10.0.0.1"])
    assert sorted(map(str, not_allocated)) == ["10.0.0.1", "198.18.0.250"]
    assert sorted(await world.ipam.ips_by_handle("a")) == sorted(a.ipv4[1:])
    assert sorted(await world.ipam.release_by_handle("a")) == sorted(a.ipv4[1:])
    assert await world.ipam.release_by_handle("a") == []  # idempotent
    assert await world.kv.get(keys.handle_key("a")) is None
    assert await allocations(world.kv) == {str(b.ipv4[0]): "b"}
    await world.ipam.release_by_handle("b")
    # The host's empty block stays, ready for its next workload.
    blocks, _ = await world.kv.list(keys.block_prefix())
    assert len(blocks) == 1


async def test_an_empty_block_without_affinity_is_deleted(world: World) -> None:
    await world.pool("p", "198.18.0.0/25")
    a = await world.ipam.auto_assign(args(1, handle="a", host="h1"))
    await world.ipam.auto_assign(args(1, handle="b", host="h2"))
    guest = await world.ipam.auto_assign(args(1, handle="g", host="h3"))  # borrowed
    await world.ipam.release_ips(a.ipv4)
    await world.ipam.release_node("h1")
    blocks, _ = await world.kv.list(keys.block_prefix())
    keys_left = {b.key for b in blocks}
    await world.ipam.release_by_handle("g")
    blocks, _ = await world.kv.list(keys.block_prefix())
    gone = keys_left - {b.key for b in blocks}
    holder = ipaddress.ip_network(f"{guest.ipv4[0]}/26", strict=False)
    if holder == ipaddress.ip_network(f"{a.ipv4[0]}/26", strict=False):
        assert gone == {keys.block_key(str(holder))}  # h1's block lost its affinity, then its last address
    else:
        assert gone == set()


async def test_release_node(world: World) -> None:
    await world.pool("p", "198.18.0.0/25")
    await world.pool("v6", "fd00:1::/121")
    await world.node("h1")
    await world.node("h2")
    mine = await world.ipam.auto_assign(args(2, 1, handle="w1", host="h1"))
    tunnel = await world.ipam.auto_assign(args(1, handle="vxlan-tunnel-addr-h1", host="h1", intended_use="Tunnel",
                                               attrs={"node": "elsewhere", "type": "vxlanTunnelAddress"}))
    other = await world.ipam.auto_assign(args(1, handle="w2", host="h2"))
    # Fill the pool so that h2 borrows from h1's block.
    await world.ipam.auto_assign(args(128 - 4, handle="fill", host="h2"))
    result = await world.ipam.release_node("h1")
    assert sorted(map(str, result.addresses)) == sorted(map(str, [*mine.ipv4, *mine.ipv6, *tunnel.ipv4]))
    assert len(result.affinities) == 2
    assert (await world.kv.list(keys.host_affinity_prefix("h1")))[0] == []
    left = await allocations(world.kv)
    assert str(other.ipv4[0]) in left and not any(h in ("w1", "vxlan-tunnel-addr-h1") for h in left.values())
    # h1's IPv4 block still holds h2's borrowed addresses, so it stays, with no affinity; the IPv6 one is gone.
    blocks, _ = await world.kv.list(keys.block_prefix())
    docs = {b.key: json.loads(b.value) for b in blocks}
    assert all(d["affinity"] in ("host:h2", None) for d in docs.values())
    assert not any(k.startswith(keys.block_prefix(6)) for k in docs)
    assert await world.ipam.release_node("h1") == type(result)([], [], 0)  # idempotent


async def test_config(world: World) -> None:
    assert await world.ipam.get_config() == IPAMConfig()
    await world.ipam.set_config(IPAMConfig(strict_affinity=True, auto_allocate_blocks=False))
    stored = await world.kv.get(keys.IPAM_CONFIG_KEY)
    assert stored is not None and json.loads(stored.value) == {"strict_affinity": True}
    assert await world.ipam.get_config() == IPAMConfig(True, False, 0)
    with pytest.raises(InvalidConfig):
        await world.ipam.set_config(IPAMConfig(strict_affinity=False, auto_allocate_blocks=False))
    await world.pool("p", "198.18.0.0/24")
    with pytest.raises(AddressesExhausted):  # no block may be claimed
        await world.ipam.auto_assign(args(1))


async def test_max_blocks_per_host(world: World) -> None:
    await world.pool("p", "198.18.0.0/24")
    await world.ipam.set_config(IPAMConfig(strict_affinity=True, max_blocks_per_host=1))
    await world.ipam.auto_assign(args(64, handle="a"))
    with pytest.raises(AddressesExhausted):
        await world.ipam.auto_assign(args(1, handle="b"))
    assert (await world.ipam.auto_assign(args(1, handle="c", host="h2"))).ipv4


async def test_two_clients_of_one_host_never_share_an_address(world: World) -> None:
    await world.pool("p", "198.18.0.0/24")
    c1, c2 = world.client(), world.client()
    got = []
    for i in range(40):  # interleaved: each client's cached block is stale every other call
        got += (await (c1 if i % 2 else c2).auto_assign(args(1, handle=f"w{i}"))).ipv4
    assert len(set(got)) == 40
    assert len(await allocations(world.kv)) == 40
    affs, _ = await world.kv.list(keys.host_affinity_prefix("h1"))
    assert len(affs) == 1  # both used the same block


async def test_a_corrupt_block_is_skipped_and_reported(world: World) -> None:
    await world.pool("p", "198.18.0.0/25")
    got = await world.ipam.auto_assign(args(1, handle="a"))
    block = ipaddress.ip_network(f"{got.ipv4[0]}/26", strict=False)
    await world.kv.put(keys.block_key(str(block)), b'{"cidr": "198.18.0.0/26", "allocations": "?"}')
    other = await world.client().auto_assign(args(1, handle="b"))
    assert other.ipv4[0] not in block
    report = await world.ipam.check()
    assert len(report.corrupt_blocks) == 1 and str(block).replace("/", "-") in report.corrupt_blocks[0]


async def test_a_pending_claim_is_finished_by_the_next_assignment(world: World) -> None:
    await world.pool("p", "198.18.0.0/26")
    await world.kv.create(keys.affinity_key("h1", "198.18.0.0/26"), b'{"state":"pending","deleted":false}')
    got = await world.ipam.auto_assign(args(1))
    assert got.ipv4 == [ipaddress.ip_address("198.18.0.0")]
    aff = await world.kv.get(keys.affinity_key("h1", "198.18.0.0/26"))
    assert aff is not None and json.loads(aff.value)["state"] == "confirmed"


async def test_a_stale_affinity_is_dropped(world: World) -> None:
    await world.pool("p", "198.18.0.0/25")
    got = await world.ipam.auto_assign(args(1, host="h2"))
    theirs = str(ipaddress.ip_network(f"{got.ipv4[0]}/26", strict=False))
    await world.kv.create(keys.affinity_key("h1", theirs), b'{"state":"confirmed","deleted":false}')
    mine = await world.ipam.auto_assign(args(1, handle="m", host="h1"))
    assert mine.ipv4[0] not in ipaddress.ip_network(theirs)
    assert await world.kv.get(keys.affinity_key("h1", theirs)) is None


async def test_a_long_lived_client_honours_a_pool_change_at_once(world: World) -> None:
    await world.pool("a", "198.18.0.0/24")
    await world.pool("b", "198.18.1.0/24")
    first = await world.ipam.auto_assign(args(1, handle="w0"))  # pools now kept by the client
    in_a = first.ipv4[0] in ipaddress.ip_network("198.18.0.0/24")
    await world.pool("a" if in_a else "b", "198.18.0.0/24" if in_a else "198.18.1.0/24", disabled=True)
    nxt = await world.ipam.auto_assign(args(1, handle="w1"))  # the write is fenced on the pool's revision
    assert (nxt.ipv4[0] in ipaddress.ip_network("198.18.0.0/24")) != in_a
    await world.pool("a" if not in_a else "b", "198.18.1.0/24" if in_a else "198.18.0.0/24", disabled=True)
    with pytest.raises(NoUsablePool):
        await world.ipam.auto_assign(args(1, handle="w2"))
    assert set(await allocations(world.kv)) == {str(first.ipv4[0]), str(nxt.ipv4[0])}


async def test_a_new_pool_is_found_when_the_kept_ones_are_full(world: World) -> None:
    await world.pool("small", "198.18.0.0/26")
    await world.ipam.auto_assign(args(64, handle="fill"))
    await world.pool("more", "198.18.1.0/26")
    got = await world.ipam.auto_assign(args(1, handle="w1"))
    assert got.ipv4[0] in ipaddress.ip_network("198.18.1.0/26")


async def test_reservations_reach_long_lived_clients_within_the_context_ttl(world: World) -> None:
    await world.pool("p", "198.18.0.0/26")
    fresh = world.client(context_ttl=0)
    kept = world.client(context_ttl=0.2)
    await kept.auto_assign(args(1, handle="w0"))  # ordinal 0
    await world.reserve("r", "198.18.0.1", "198.18.0.2")
    assert (await fresh.auto_assign(args(1, handle="w1"))).ipv4 == [ipaddress.ip_address("198.18.0.3")]
    await asyncio.sleep(0.25)
    assert (await kept.auto_assign(args(1, handle="w2"))).ipv4 == [ipaddress.ip_address("198.18.0.4")]


async def test_a_client_never_trusts_its_memory_of_a_handle_it_takes_from(world: World) -> None:
    # Found by the model test: client B deleted handle w1, client A created it again, B releases it again.
    await world.pool("p", "198.18.0.0/26")
    a, b = world.client(), world.client()
    await a.assign_ip("198.18.0.1", handle_id="w1", hostname="h1")
    await b.release_node("h1")
    await a.assign_ip("198.18.0.1", handle_id="w1", hostname="h1")
    await b.release_node("h1")
    assert await allocations(world.kv) == {}  # also: no handle record left behind

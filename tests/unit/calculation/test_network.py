"""What Felix calculates for a network of hosts: pools, VTEPs and routes (see `calculation/routes.py`).

Hosts: n1 (this host) and n2 in subnet 198.19.1.0/24, n3 in 198.19.2.0/24. Pool 198.18.0.0/16 (blocks /26),
IPv6 pool fd00:1::/48 (blocks /122). Tunnel addresses sit in each node's first block, as IPAM hands them out.
"""

from __future__ import annotations

import json
import logging

import pytest

from calico.calculation.events import (
    DataplaneEvent,
    IPPoolRemove,
    IPPoolUpdate,
    RouteKind,
    RouteRemove,
    RouteUpdate,
    VTEPRemove,
    VTEPUpdate,
    WorkloadEndpointUpdate,
)
from calico.calculation.nodes import vtep_mac
from calico.datastore.keys import affinity_key
from tests.unit.calculation.builders import HOST, Feeder, affinity, encode, key_of, node, pool, wep

POOL = "198.18.0.0/16"
B1, B2, B3 = "198.18.0.0/26", "198.18.1.0/26", "198.18.2.0/26"
V6POOL = "fd00:1::/48"
B2V6 = "fd00:1::200/122"


def n1(**kw: str) -> dict:
    return node(HOST, **{"ipv4": "198.19.1.1/24", "vxlan": "198.18.0.1", **kw})


def n2(**kw: str) -> dict:
    return node("n2", **{"ipv4": "198.19.1.2/24", "vxlan": "198.18.1.1", "mac": "02:00:00:00:00:02", **kw})


def n3(**kw: str) -> dict:
    return node("n3", **{"ipv4": "198.19.2.3/24", "vxlan": "198.18.2.1", **kw})


def cluster(mode: str = "Always") -> Feeder:
    """Three nodes, one pool, each node holding its block; flushed."""
    f = Feeder().put(n1(), n2(), n3(), pool("p4", POOL, vxlan=mode, nat=True, blockSize=26))
    for name, block in ((HOST, B1), ("n2", B2), ("n3", B3)):
        f.put_raw(*affinity(name, block))
    f.graph.on_in_sync()
    f.flush()
    return f


def of(events: list[DataplaneEvent], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_vxlan_always_routes_remote_blocks_through_their_vteps() -> None:
    f = cluster("Always")
    assert f.dp.pools == {
        POOL: IPPoolUpdate(
            POOL, nat_outgoing=True, vxlan_mode="Always", ipip_mode="Never", disabled=False, block_size=26
        )
    }
    assert f.dp.vteps["n2"] == VTEPUpdate("n2", "198.19.1.2", "198.18.1.1", "02:00:00:00:00:02")
    assert f.dp.vteps["n3"] == VTEPUpdate("n3", "198.19.2.3", "198.18.2.1", vtep_mac("n3", 4))
    # This host's own VTEP describes its device; its own block is a local block.
    assert f.dp.vteps[HOST].ipv4_addr == "198.18.0.1"
    assert f.dp.routes == {
        B1: RouteUpdate(B1, HOST, None, RouteKind.LOCAL_BLOCK),
        B2: RouteUpdate(B2, "n2", "198.18.1.1", RouteKind.VXLAN),
        B3: RouteUpdate(B3, "n3", "198.18.2.1", RouteKind.VXLAN),
    }


def test_cross_subnet_is_direct_within_this_hosts_subnet_and_vxlan_across() -> None:
    f = cluster("CrossSubnet")
    assert f.dp.routes[B2] == RouteUpdate(B2, "n2", "198.19.1.2", RouteKind.DIRECT)
    assert f.dp.routes[B3] == RouteUpdate(B3, "n3", "198.18.2.1", RouteKind.VXLAN)


def test_never_pool_leaves_routes_to_bird_but_keeps_local_blocks() -> None:
    f = cluster("Never")
    assert f.dp.routes == {B1: RouteUpdate(B1, HOST, None, RouteKind.LOCAL_BLOCK)}
    assert f.dp.pools[POOL].vxlan_mode == "Never"


@pytest.mark.parametrize(
    ("before", "after", "b2_kind"),
    [
        ("Never", "Always", RouteKind.VXLAN),
        ("Never", "CrossSubnet", RouteKind.DIRECT),
        ("Always", "CrossSubnet", RouteKind.DIRECT),
        ("CrossSubnet", "Always", RouteKind.VXLAN),
        ("Always", "Never", None),
    ],
)
def test_pool_mode_changes(before: str, after: str, b2_kind: RouteKind | None) -> None:
    f = cluster(before)
    f.put(pool("p4", POOL, vxlan=after, nat=True, blockSize=26))
    events = f.flush()
    assert of(events, IPPoolUpdate)[0].vxlan_mode == after
    route = f.dp.routes.get(B2)
    assert (route.kind if route else None) is b2_kind
    assert not of(events, VTEPUpdate)  # VTEPs do not depend on pools


@pytest.mark.parametrize("mode", ["Always", "CrossSubnet"])
def test_ipip_pools_route_through_the_node_address_and_carry_this_hosts_tunl0_address(mode: str) -> None:
    f = Feeder().put(n1(ipip="198.18.0.3"), n2(ipip="198.18.1.3"), n3(),
                     pool("p4", POOL, ipip=mode, nat=True, blockSize=26))
    for name, block in ((HOST, B1), ("n2", B2), ("n3", B3)):
        f.put_raw(*affinity(name, block))
    f.graph.on_in_sync()
    f.flush()
    assert f.dp.vteps[HOST].ipip_addr == "198.18.0.3" and f.dp.vteps["n2"].ipip_addr == "198.18.1.3"
    assert f.dp.routes[B1] == RouteUpdate(B1, HOST, None, RouteKind.LOCAL_BLOCK)
    same_subnet = RouteKind.DIRECT if mode == "CrossSubnet" else RouteKind.IPIP
    assert f.dp.routes[B2] == RouteUpdate(B2, "n2", "198.19.1.2", same_subnet)
    assert f.dp.routes[B3] == RouteUpdate(B3, "n3", "198.19.2.3", RouteKind.IPIP)  # no tunnel address needed
    # A node with only an IP-in-IP address still has a VTEP (its VXLAN families empty).
    f.put(node("n4", ipv4="198.19.2.4/24", ipip="198.18.3.3"))
    f.flush()
    assert f.dp.vteps["n4"] == VTEPUpdate("n4", None, None, None, ipip_addr="198.18.3.3")
    # Back to no encapsulation: BIRD's again.
    f.put(pool("p4", POOL, nat=True, blockSize=26))
    f.flush()
    assert set(f.dp.routes) == {B1}


def test_pool_removed_after_its_routes() -> None:
    f = cluster("Always")
    f.delete(pool("p4", POOL))
    events = f.flush()
    assert [type(e) for e in events] == [RouteRemove, RouteRemove, IPPoolRemove]  # the model checks the order too
    assert f.dp.routes == {B1: RouteUpdate(B1, HOST, None, RouteKind.LOCAL_BLOCK)}


def test_pool_cidr_change_and_two_pools_with_one_cidr() -> None:
    f = cluster("Always")
    f.put(pool("p4", "198.18.0.0/17", vxlan="Always", blockSize=26))
    events = f.flush()
    assert IPPoolRemove(POOL) in events and "198.18.0.0/17" in f.dp.pools
    assert f.dp.routes[B2].kind is RouteKind.VXLAN  # still inside a VXLAN pool
    # A second pool named later with the same CIDR changes nothing; deleting the first hands over to it.
    f.put(pool("p5", "198.18.0.0/17", vxlan="CrossSubnet", blockSize=26))
    assert f.flush() == []
    f.delete(pool("p4", "198.18.0.0/17"))
    f.flush()
    assert f.dp.pools["198.18.0.0/17"].vxlan_mode == "CrossSubnet"
    assert f.dp.routes[B2].kind is RouteKind.DIRECT


def test_affinity_states() -> None:
    f = cluster("Always")
    f.put_raw(*affinity("n2", "198.18.1.64/26", state="pending"))
    assert f.flush() == []
    f.put_raw(*affinity("n2", "198.18.1.64/26"))
    assert f.flush() == [RouteUpdate("198.18.1.64/26", "n2", "198.18.1.1", RouteKind.VXLAN)]
    f.put_raw(*affinity("n2", "198.18.1.64/26", state="pendingDeletion"))
    assert f.flush() == [RouteRemove("198.18.1.64/26")]
    f.put_raw(*affinity("n2", "198.18.1.64/26"))
    f.flush()
    f.put_raw(*affinity("n2", "198.18.1.64/26", deleted=True))
    assert f.flush() == [RouteRemove("198.18.1.64/26")]


def test_one_affinity_change_touches_only_its_route() -> None:
    f = cluster("Always")
    f.put_raw(*affinity("n3", "198.18.3.0/26"))
    assert f.flush() == [RouteUpdate("198.18.3.0/26", "n3", "198.18.2.1", RouteKind.VXLAN)]
    f.delete_raw(affinity_key("n3", "198.18.3.0/26"))
    assert f.flush() == [RouteRemove("198.18.3.0/26")]


def test_affinity_moves_between_nodes() -> None:
    f = cluster("CrossSubnet")
    f.delete_raw(affinity_key("n2", B2))
    f.put_raw(*affinity("n3", B2))
    assert f.flush() == [RouteUpdate(B2, "n3", "198.18.2.1", RouteKind.VXLAN)]
    # A block moving to this host becomes a local block; moving away makes it a remote route again.
    f.delete_raw(affinity_key("n3", B2))
    f.put_raw(*affinity(HOST, B2))
    assert f.flush() == [RouteUpdate(B2, HOST, None, RouteKind.LOCAL_BLOCK)]
    # Two holders at once (mid-move): the lowest node name wins, deterministically.
    f.put_raw(*affinity("n2", B2))
    assert f.flush() == []  # n1 < n2
    f.delete_raw(affinity_key(HOST, B2))
    assert f.flush() == [RouteUpdate(B2, "n2", "198.19.1.2", RouteKind.DIRECT)]


def test_remote_node_address_change_touches_only_its_vtep_and_routes() -> None:
    f = cluster("CrossSubnet")
    f.put(n2(ipv4="198.19.2.2/24"))  # n2 moves to the other subnet
    events = f.flush()
    assert events == [
        VTEPUpdate("n2", "198.19.2.2", "198.18.1.1", "02:00:00:00:00:02"),
        RouteUpdate(B2, "n2", "198.18.1.1", RouteKind.VXLAN),
    ]
    f.put(n2(ipv4="198.19.2.2/24", vxlan="198.18.1.9"))  # new tunnel address: VTEP first, then the route
    assert [type(e) for e in f.flush()] == [VTEPUpdate, RouteUpdate]
    assert f.dp.routes[B2].gateway == "198.18.1.9"
    # Labels and AS numbers are no business of routing.
    doc = n2(ipv4="198.19.2.2/24", vxlan="198.18.1.9")
    doc["metadata"]["labels"] = {"rack": "r1"}
    f.put(doc)
    assert f.flush() == []


def test_tunnel_gone_removes_routes_before_the_vtep() -> None:
    f = cluster("Always")
    f.put(node("n2", ipv4="198.19.1.2/24"))
    assert f.flush() == [RouteRemove(B2), VTEPRemove("n2")]
    f.delete(node("n3"))
    assert f.flush() == [RouteRemove(B3), VTEPRemove("n3")]
    f.put(n3())
    assert f.flush() == [
        VTEPUpdate("n3", "198.19.2.3", "198.18.2.1", vtep_mac("n3", 4)),
        RouteUpdate(B3, "n3", "198.18.2.1", RouteKind.VXLAN),
    ]


def test_cross_subnet_switch_to_direct_when_the_vtep_goes() -> None:
    f = cluster("CrossSubnet")
    f.put(node("n2", ipv4="198.19.1.2/24"))  # no tunnel, same subnet: the direct route stays
    assert f.flush() == [VTEPRemove("n2")]
    assert f.dp.routes[B2].kind is RouteKind.DIRECT


def test_this_hosts_subnet_change_recomputes_cross_subnet_routes() -> None:
    f = cluster("CrossSubnet")
    f.put(wep("w3", node="n3", ips=["198.18.1.5"]))  # borrowed
    f.flush()
    f.put(n1(ipv4="198.19.2.1/24"))
    events = f.flush()
    assert of(events, RouteUpdate) == [
        RouteUpdate(B2, "n2", "198.18.1.1", RouteKind.VXLAN),
        RouteUpdate("198.18.1.5/32", "n3", "198.19.2.3", RouteKind.DIRECT),
        RouteUpdate(B3, "n3", "198.19.2.3", RouteKind.DIRECT),
    ]
    f.put(node(HOST, vxlan="198.18.0.1"))  # this host lost its address: no subnet, so everything is VXLAN
    f.flush()
    assert {d: r.kind for d, r in f.dp.routes.items()} == {
        B1: RouteKind.LOCAL_BLOCK,
        B2: RouteKind.VXLAN,
        B3: RouteKind.VXLAN,
        "198.18.1.5/32": RouteKind.VXLAN,
    }


def test_borrowed_addresses_get_their_own_route() -> None:
    f = cluster("Always")
    # n3's workload has an address from n2's block: a /32 towards n3, next to n2's block route.
    f.put(wep("w3", node="n3", ips=["198.18.1.5"]))
    assert f.flush() == [RouteUpdate("198.18.1.5/32", "n3", "198.18.2.1", RouteKind.VXLAN)]
    # One from its own block needs nothing beyond the block's route.
    f.put(wep("w4", node="n3", ips=["198.18.2.7"]))
    assert f.flush() == []
    # An address borrowed from this host's block is routed to its node too (more specific than ours).
    f.put(wep("w5", node="n2", ips=["198.18.0.9"]))
    assert f.flush() == [RouteUpdate("198.18.0.9/32", "n2", "198.18.1.1", RouteKind.VXLAN)]
    # When n3 comes to hold the block, the address is no longer borrowed.
    f.put_raw(*affinity("n3", "198.18.1.0/28"))
    events = f.flush()
    assert RouteRemove("198.18.1.5/32") in events
    # A workload moving here is routed by its interface, not by Felix's remote routes.
    f.put(wep("w5", node=HOST, ips=["198.18.0.9"]))
    events = f.flush()
    assert RouteRemove("198.18.0.9/32") in events and of(events, WorkloadEndpointUpdate)
    # Outside VXLAN pools, borrowed addresses are BIRD's.
    f.put(wep("w6", node="n3", ips=["198.20.0.1"]))
    assert f.flush() == []


def test_borrowed_address_and_pool_changes() -> None:
    f = cluster("Never")
    f.put(wep("w3", node="n3", ips=["198.18.1.5"]))
    assert f.flush() == []
    f.put(pool("p4", POOL, vxlan="CrossSubnet", nat=True, blockSize=26))
    f.flush()
    assert f.dp.routes["198.18.1.5/32"] == RouteUpdate("198.18.1.5/32", "n3", "198.18.2.1", RouteKind.VXLAN)
    f.put(wep("w2", node="n2", ips=["198.18.2.9"]))  # n2 is in this host's subnet: direct
    f.flush()
    assert f.dp.routes["198.18.2.9/32"].kind is RouteKind.DIRECT
    f.put(pool("p4", POOL, vxlan="Always", nat=True, blockSize=26))  # same addresses, new mode
    f.flush()
    assert f.dp.routes["198.18.2.9/32"] == RouteUpdate("198.18.2.9/32", "n2", "198.18.1.1", RouteKind.VXLAN)
    f.delete(wep("w3", node="n3"))
    assert f.flush() == [RouteRemove("198.18.1.5/32")]


def test_ipv6_uses_the_v6_tunnel_and_underlay() -> None:
    f = cluster("Always")
    f.put(pool("p6", V6POOL, vxlan="CrossSubnet", blockSize=122))
    f.put(n1(ipv6="fd00:ff:1::1/64", vxlan_v6="fd00:1::1"))
    f.put(n2(ipv6="fd00:ff:2::2/64", vxlan_v6="fd00:1::201"))
    f.put_raw(*affinity("n2", B2V6))
    f.flush()
    vtep = f.dp.vteps["n2"]
    assert (vtep.parent_ip_v6, vtep.ipv6_addr, vtep.mac_v6) == ("fd00:ff:2::2", "fd00:1::201", vtep_mac("n2", 6))
    assert vtep.mac == "02:00:00:00:00:02" and vtep.mac_v6 != vtep.mac
    assert f.dp.routes[B2V6] == RouteUpdate(B2V6, "n2", "fd00:1::201", RouteKind.VXLAN)  # other v6 subnet
    # Same v6 subnet: direct via the v6 underlay. The v4 route is unaffected.
    f.put(n2(ipv6="fd00:ff:1::2/64", vxlan_v6="fd00:1::201"))
    events = f.flush()
    assert of(events, RouteUpdate) == [RouteUpdate(B2V6, "n2", "fd00:ff:1::2", RouteKind.DIRECT)]
    # Families are independent: without a v6 tunnel a v6 VXLAN route has no gateway, the v4 one stays.
    f.put(pool("p6", V6POOL, vxlan="Always", blockSize=122))
    f.put(n2(ipv6="fd00:ff:1::2/64"))
    f.flush()
    assert B2V6 not in f.dp.routes and f.dp.routes[B2].kind is RouteKind.VXLAN
    assert f.dp.vteps["n2"].ipv6_addr is None and f.dp.vteps["n2"].ipv4_addr == "198.18.1.1"


def test_vtep_needs_tunnel_and_underlay_of_one_family() -> None:
    f = Feeder().put(node("n2", vxlan="198.18.1.1"), node("n3", ipv6="fd00:ff:1::3/64", vxlan="198.18.2.1"))
    f.flush()
    assert f.dp.vteps == {}
    f.put(node("n3", ipv4="198.19.1.3/24", vxlan="198.18.2.1"))
    f.flush()
    assert set(f.dp.vteps) == {"n3"}


def test_vtep_mac_is_calicos_derivation() -> None:
    mac = vtep_mac("node-a", 4)
    first = int(mac[:2], 16)
    assert first == 0x66 and first & 0x02 and not first & 0x01  # locally administered, unicast
    assert len(mac.split(":")) == 6 and mac == vtep_mac("node-a", 4) != vtep_mac("node-a", 6)
    assert vtep_mac("node-a", 4) != vtep_mac("node-b", 4)


def test_bad_pool_and_bad_node_we_knew_keep_their_last_good_value(caplog: pytest.LogCaptureFixture) -> None:
    f = cluster("Always")
    with caplog.at_level(logging.WARNING):
        f.put_raw(key_of(pool("p4", POOL)), encode(pool("p4", POOL, vxlan="Sometimes")))
        f.put_raw(key_of(node("n2")), b"\xff not json")
        f.put_raw(key_of(node("n9")), encode(node("n9", ipv4="not-an-address")))
        f.put_raw(key_of(pool("p9", POOL)), b"[]")
    assert f.flush() == []
    assert f.dp.routes[B2].kind is RouteKind.VXLAN and "n2" in f.dp.vteps
    assert caplog.text.count("keeping its last good value") == 2
    assert caplog.text.count("ignored, no good value known") == 2


@pytest.mark.parametrize(
    "value",
    [b"\xff", b"[]", b'{"state": "maybe"}', b'{"state": ["confirmed"]}', b'{"state": "confirmed", "deleted": 1}'],
)
def test_malformed_affinity_reads_as_absent(value: bytes, caplog: pytest.LogCaptureFixture) -> None:
    f = cluster("Always")
    with caplog.at_level(logging.WARNING):
        f.put_raw(affinity_key("n2", B2), value)
    assert f.flush() == [RouteRemove(B2)]
    assert "block affinity 198.18.1.0/26 of node n2" in caplog.text and "treated as absent" in caplog.text
    f.put_raw(*affinity("n2", B2))
    assert f.flush() == [RouteUpdate(B2, "n2", "198.18.1.1", RouteKind.VXLAN)]


def test_affinity_without_deleted_field_and_odd_ipam_keys() -> None:
    f = cluster("Always")
    f.put_raw(affinity_key("n3", "198.18.3.0/26"), json.dumps({"state": "confirmed"}).encode())
    assert f.flush() == [RouteUpdate("198.18.3.0/26", "n3", "198.18.2.1", RouteKind.VXLAN)]
    for key in ("/calico/ipam/v2/host/n3/ipv4/block/nonsense", "/calico/ipam/v2/host/n3", "/calico/ipam/v2/config"):
        f.put_raw(key, b'{"state": "confirmed"}')
    assert f.flush() == []

"""Pool choice (nodeSelector, disabled, allowedUses, named pools), block arithmetic, reservations and the
free-block search."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

from calico.ipam.errors import NoUsablePool
from calico.ipam.pools import (
    Reservations,
    block_of,
    choose_pools,
    free_blocks,
    host_seed,
    needs_node_labels,
    pool_of,
)
from calico.resources import IPPool, parse_resource


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    res = parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
                          "spec": {"cidr": cidr, **spec}})
    assert isinstance(res, IPPool)
    return res


POOLS = [
    pool("b", "198.18.64.0/18"),
    pool("a", "198.18.0.0/18"),
    pool("off", "198.18.128.0/18", disabled=True),
    pool("rack1", "198.18.192.0/18", nodeSelector="rack == 'r1'"),
    pool("tunnels", "198.19.0.0/24", allowedUses=["Tunnel"]),
    pool("v6", "fd00:1::/64"),
]


def names(pools: list[IPPool]) -> list[str]:
    return [p.metadata.name for p in pools]


def test_every_enabled_pool_that_selects_the_node_in_cidr_order() -> None:
    assert names(choose_pools(POOLS, 4, {}, "Workload")) == ["a", "b"]
    assert names(choose_pools(POOLS, 4, {"rack": "r1"}, "Workload")) == ["a", "b", "rack1"]
    assert names(choose_pools(POOLS, 4, {}, "Tunnel")) == ["a", "b", "tunnels"]
    assert names(choose_pools(POOLS, 6, {}, "Workload")) == ["v6"]


def test_named_pools_must_exist_and_be_enabled_and_still_pass_the_checks() -> None:
    assert names(choose_pools(POOLS, 4, {}, "Workload", ["b"])) == ["b"]
    assert names(choose_pools(POOLS, 4, {}, "Workload", ["198.18.0.0/18", "b"])) == ["a", "b"]
    with pytest.raises(NoUsablePool, match="'off' does not exist or is disabled"):
        choose_pools(POOLS, 4, {}, "Workload", ["off"])
    with pytest.raises(NoUsablePool, match="'nope' does not exist"):
        choose_pools(POOLS, 4, {}, "Workload", ["nope"])
    with pytest.raises(NoUsablePool, match="none allows Workload addresses on node 'h1'"):
        choose_pools(POOLS, 4, {}, "Workload", ["tunnels"], node="h1")
    with pytest.raises(NoUsablePool, match="none allows"):
        choose_pools(POOLS, 4, {"rack": "r2"}, "Workload", ["rack1"])


def test_no_pool() -> None:
    with pytest.raises(NoUsablePool, match="no IPv6 IPPool can serve this request: none is enabled"):
        choose_pools([POOLS[0]], 6, {}, "Workload")
    with pytest.raises(NoUsablePool, match="intended use"):
        choose_pools(POOLS, 4, {}, "Other")


def test_node_labels_are_only_needed_for_real_selectors() -> None:
    assert not needs_node_labels(POOLS[:3])
    assert needs_node_labels(POOLS)


def test_block_of_and_pool_of() -> None:
    assert block_of(ipaddress.ip_address("198.18.1.70"), 26) == ipaddress.ip_network("198.18.1.64/26")
    assert block_of(ipaddress.ip_address("fd00:1::45"), 122) == ipaddress.ip_network("fd00:1::40/122")
    assert block_of(ipaddress.ip_address("::5"), 122) == ipaddress.ip_network("::/122")
    assert pool_of(ipaddress.ip_address("198.18.70.1"), POOLS) is POOLS[0]
    assert pool_of(ipaddress.ip_address("10.0.0.1"), POOLS) is None


def test_reservations() -> None:
    r = Reservations(["198.18.0.3/32", "198.18.0.8/29", "198.18.0.10/32", "fd00:1::/126"])
    assert r.v4 == [ipaddress.ip_network("198.18.0.3/32"), ipaddress.ip_network("198.18.0.8/29")]  # merged
    block = ipaddress.ip_network("198.18.0.0/26")
    assert r.ordinals(block) == frozenset({3, *range(8, 16)})
    assert r.ordinals(ipaddress.ip_network("198.18.0.64/26")) == frozenset()
    assert r.count_in(block) == 9 and r.count_in(ipaddress.ip_network("fd00:1::/64")) == 4
    assert r.contains(ipaddress.ip_address("198.18.0.12")) and not r.contains(ipaddress.ip_address("198.18.0.2"))
    assert r.covering(ipaddress.ip_network("198.18.0.8/30")) == ipaddress.ip_network("198.18.0.8/29")
    assert not Reservations([]) and Reservations(["fd00::1"])


def test_free_blocks_start_at_the_hosts_place_and_skip_taken_ones() -> None:
    p = pool("p", "198.18.0.0/24")  # 4 blocks of /26
    seed = 2
    assert [str(b) for b in free_blocks([p], set(), Reservations([]), seed)] == [
        "198.18.0.128/26", "198.18.0.192/26", "198.18.0.0/26", "198.18.0.64/26"]
    taken = {"198.18.0.128/26", "198.18.0.0/26"}
    assert [str(b) for b in free_blocks([p], taken, Reservations([]), seed)] == ["198.18.0.192/26", "198.18.0.64/26"]
    assert list(free_blocks([p], {str(b) for b in ipaddress.ip_network("198.18.0.0/24").subnets(new_prefix=26)},
                            Reservations([]), seed)) == []


def test_free_blocks_jump_over_whole_reservations() -> None:
    p = pool("p", "198.18.0.0/16")  # 1024 blocks
    reserved = Reservations(["198.18.0.0/17"])  # the first 512 blocks
    got = list(itertools.islice(free_blocks([p], set(), reserved, 0), 3))
    assert [str(b) for b in got] == ["198.18.128.0/26", "198.18.128.64/26", "198.18.128.128/26"]
    partly = Reservations(["198.18.0.0/27"])  # half a block: the block is still usable
    assert str(next(free_blocks([p], set(), partly, 0))) == "198.18.0.0/26"


def test_free_blocks_in_a_huge_ipv6_pool_are_found_quickly() -> None:
    p = pool("v6", "fd00:1::/48")  # 2^74 blocks of /122
    first = next(free_blocks([p], set(), Reservations([]), host_seed("h1")))
    assert first.prefixlen == 122 and first.subnet_of(ipaddress.ip_network("fd00:1::/48"))
    nxt = next(free_blocks([p], {str(first)}, Reservations([]), host_seed("h1")))
    assert nxt != first and int(nxt.network_address) - int(first.network_address) in (64, -(2**80) + 64)


def test_hosts_start_at_different_places() -> None:
    p = pool("p", "198.18.0.0/16")
    starts = {str(next(free_blocks([p], set(), Reservations([]), host_seed(f"host-{i}")))) for i in range(20)}
    assert len(starts) >= 18

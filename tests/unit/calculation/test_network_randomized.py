"""Randomized: pools, VTEPs and routes after incremental updates equal a from-scratch computation.

Each operation changes one key of a small network: Nodes (addresses in two subnets per family, tunnel
addresses, MACs, IP-in-IP tunnel addresses), IPPools (CIDR, vxlanMode or ipipMode, natOutgoing), block affinities (any state, deleted, malformed)
and WorkloadEndpoints (node, addresses inside and outside blocks and pools), or deletes it. The incremental
graph's events go through the model dataplane (`builders.Dataplane`), which checks ordering as it goes
(VTEP before its routes, routes before their VTEP and pool go, gateways current after every flush).
"""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calculation.events import (
    DataplaneEvent,
    IPPoolRemove,
    RouteKind,
    RouteRemove,
    RouteUpdate,
    VTEPRemove,
    VTEPUpdate,
)
from calico.calculation.graph import CalcGraph
from calico.datastore.keys import affinity_key
from tests.unit.calculation.builders import HOST, Dataplane, encode, from_scratch, key_of, node, pool, wep

NODES = [HOST, "n2", "n3"]
POOLS = {"p4a": ["198.18.0.0/16", "198.18.0.0/17"], "p4b": ["198.20.0.0/16"], "p6": ["fd00:1::/48"]}
BLOCKS = ["198.18.0.0/26", "198.18.1.0/26", "198.18.128.0/26", "198.20.0.0/26", "fd00:1::/122", "fd00:1::200/122"]
ADDRS = [
    "198.18.0.5",
    "198.18.1.5",
    "198.18.1.7",
    "198.18.128.5",
    "198.20.0.5",
    "198.21.0.5",
    "fd00:1::5",
    "fd00:1::205",
]
MODES = ["Never", "Always", "CrossSubnet"]


def _node_doc(rng: random.Random, name: str) -> dict:
    i = NODES.index(name) + 1
    pick = rng.random
    return node(
        name,
        ipv4=rng.choice([f"198.19.1.{i}/24", f"198.19.2.{i}/24", None]),
        ipv6=rng.choice([f"fd00:ff:1::{i}/64", f"fd00:ff:2::{i}/64", None]),
        vxlan=rng.choice([f"198.18.{i}.1", f"198.18.{i}.2", None]),
        mac=f"02:00:00:00:00:0{i}" if pick() < 0.3 else None,
        vxlan_v6=rng.choice([f"fd00:1::{i}01", None]),
        mac_v6=f"02:00:00:00:06:0{i}" if pick() < 0.3 else None,
        ipip=rng.choice([f"198.18.{i}.3", None]),
    )


def random_op(seed: int) -> tuple[str, bytes | None, bool]:
    """(key, value or None, flush after this op)."""
    rng = random.Random(seed)
    kind = rng.choices(["node", "pool", "affinity", "wep"], weights=[3, 2, 5, 4])[0]
    delete = rng.random() < 0.15
    flush = rng.random() < 0.5
    if kind == "affinity":
        key = affinity_key(rng.choice(NODES), rng.choice(BLOCKS))
        roll = rng.random()
        if roll < 0.1:
            return key, b'{"state": 7}', flush  # malformed: reads as absent
        state = rng.choice(["confirmed", "confirmed", "pending", "pendingDeletion"])
        value = json.dumps({"state": state, "deleted": roll < 0.2}).encode()
        return key, None if delete else value, flush
    if kind == "node":
        doc = _node_doc(rng, rng.choice(NODES))
    elif kind == "pool":
        name = rng.choice(sorted(POOLS))
        size = 122 if name == "p6" else 26
        vxlan = rng.choice(MODES)
        ipip = rng.choice(MODES) if vxlan == "Never" and name != "p6" else "Never"
        doc = pool(name, rng.choice(POOLS[name]), vxlan=vxlan, ipip=ipip, nat=rng.random() < 0.5, blockSize=size)
    else:
        doc = wep(f"w{rng.randint(0, 5)}", node=rng.choice(NODES), ips=rng.sample(ADDRS, rng.randint(1, 2)))
    return key_of(doc), None if delete else encode(doc), flush


def _network_state(dp: Dataplane) -> dict:
    state = dp.state()
    return {k: state[k] for k in ("pools", "vteps", "routes", "weps")}


def _replay(
    seeds: list[int], seen: list[DataplaneEvent] | None = None, check: random.Random | None = None
) -> tuple[CalcGraph, Dataplane, dict[str, bytes]]:
    """Feed the operations, flushing where they say; every event also goes to `seen`. With `check`, after
    every flush the state so far must equal a from-scratch graph's over the datastore as it is then (a
    missed recomputation may otherwise be hidden by a later change)."""
    graph, dp = CalcGraph(HOST), Dataplane()
    graph.on_in_sync()
    store: dict[str, bytes] = {}
    for i, seed in enumerate(seeds):
        key, value, flush = random_op(seed)
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
        graph.on_update(key, value)
        if flush or i == len(seeds) - 1:
            events = graph.flush()
            dp.apply(events)
            if seen is not None:
                seen.extend(events)
            if check is not None:
                assert _network_state(dp) == _network_state(from_scratch(store, check)[1]), f"after op {i}"
    return graph, dp, store


@settings(max_examples=500, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32), min_size=1, max_size=60), st.randoms())
def test_incremental_network_matches_from_scratch(seeds: list[int], shuffler: random.Random) -> None:
    _replay(seeds, check=shuffler)


def test_long_random_histories() -> None:
    for trial in range(6):
        rng = random.Random(trial)
        graph, dp, store = _replay([rng.getrandbits(32) for _ in range(300)], check=rng)
        scratch, dp_scratch = from_scratch(store, rng)
        assert _network_state(dp) == _network_state(dp_scratch)
        assert scratch._routes.routes() == graph._routes.routes() == dp_scratch.routes  # their fresh views agree
        # The incremental resolver's indexes are exactly the from-scratch ones (nothing left behind).
        for name in (
            "_winner",
            "_won",
            "_claims",
            "_node_claims",
            "_block_holders",
            "_node_blocks",
            "_node_block_sizes",
            "_workloads",
        ):
            assert getattr(graph._routes, name) == getattr(scratch._routes, name), name


def test_generator_is_lively() -> None:
    """The universe really produces every kind of route and VTEP change (guards the tests above)."""
    seen: list[DataplaneEvent] = []
    for trial in range(5):
        _replay([random.Random(trial * 1000 + i).getrandbits(32) for i in range(200)], seen)
    routes = [e for e in seen if isinstance(e, RouteUpdate)]
    assert {r.kind for r in routes} == set(RouteKind)
    assert any(r.dst.endswith(("/32", "/128")) for r in routes)  # borrowed addresses
    assert any(":" in r.dst and r.kind is not RouteKind.LOCAL_BLOCK for r in routes)
    assert any(isinstance(e, VTEPUpdate) and e.ipv6_addr for e in seen)
    assert all(any(isinstance(e, t) for e in seen) for t in (RouteRemove, VTEPRemove, IPPoolRemove))

"""calico.lab.reach: many TCP probes from one process, each socket made inside its namespace.

Real namespaces (the `world` fixture: a host and CNI-wired workloads); one workload drops TCP 8080 with its own
nft table. Every pair's answer must equal what the two-process probe (`World.probe`) says.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from calico.lab.reach import Pair, reach
from tests.helpers.netns import World, sh


def test_reach_agrees_with_probes_and_sees_drops(world: World) -> None:
    a = world.add_workload("a", "198.18.7.1", "fd00:c411:0:7::1")
    b = world.add_workload("b", "198.18.7.2", "fd00:c411:0:7::2")
    c = world.add_workload("c", "198.18.7.3", "fd00:c411:0:7::3")
    # c drops what comes to its port 8080 (in c's own namespace, which this test made).
    sh("ip", "netns", "exec", c.netns, "nft",
       "add table inet t; add chain inet t in { type filter hook input priority 0; }; "
       "add rule inet t in tcp dport 8080 drop")
    wls = [a, b, c]
    pairs = [Pair(s.netns, d.netns, ip) for s in wls for d in wls if s != d for ip in (d.ipv4, d.ipv6)]
    start = time.monotonic()
    got = asyncio.run(reach(pairs, port=8080, timeout=1.0))
    took = time.monotonic() - start
    assert set(got) == set(pairs)
    for p, ok in got.items():
        assert (ok is not None) == (p.dst_ns != c.netns), p
    # The slow two-process probe agrees, pair by pair (a sample of each kind).
    for p in (pairs[0], pairs[1], next(p for p in pairs if p.dst_ns == c.netns)):
        assert world.probe(p.src_ns, p.dst_ip, timeout=0.5) == (got[p] is not None)
    assert took < 5  # every blocked pair waits out the one 1 s deadline together, not one after another


def test_reach_fails_clearly_for_a_missing_namespace(world: World) -> None:
    a = world.add_workload("a", "198.18.7.1", "fd00:c411:0:7::1")
    with pytest.raises(OSError, match="-nope"):
        asyncio.run(reach([Pair(f"{world.host}-nope", a.netns, a.ipv4)], timeout=0.2))

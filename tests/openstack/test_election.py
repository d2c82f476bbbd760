"""Leader election among Neutron servers, on the embedded store and etcd."""

from __future__ import annotations

import asyncio

from calico.datastore.kv import KVStore
from calico.openstack.election import LEADER_KEY, Election


async def test_one_leader_and_a_successor_when_it_resigns(kv: KVStore) -> None:
    a, b = Election("a", ttl=5), Election("b", ttl=5)
    assert await a.campaign(kv)
    assert not await b.campaign(kv)
    assert await a.campaign(kv)  # refreshing keeps it
    held = await kv.get(LEADER_KEY)
    assert held is not None and held.value == b"a"
    await a.resign(kv)
    assert await b.campaign(kv)
    assert not await a.campaign(kv)


async def test_a_dead_leader_is_replaced_within_its_lease(kv: KVStore) -> None:
    a, b = Election("a", ttl=1), Election("b", ttl=1)
    assert await a.campaign(kv)
    # `a` dies: it never campaigns again
    for _ in range(40):
        if await b.campaign(kv):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no new leader within 4 s of a 1 s lease")
    held = await kv.get(LEADER_KEY)
    assert held is not None and held.value == b"b"
    assert not await a.campaign(kv)  # the old leader, back, does not take over

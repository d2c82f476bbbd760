"""The syncer on both real backends: snapshot, in-sync, live updates, and exact resync after faults."""

from __future__ import annotations

from calico.datastore.kv import KVStore
from calico.datastore.syncer import Syncer, SyncStatus
from tests.helpers.flaky_kv import FlakyKV
from tests.helpers.sync_collector import SyncCollector

P = "/calico/resources/v3/projectcalico.org/"


async def test_snapshot_then_in_sync_then_live(kv: KVStore) -> None:
    for i in range(5):
        await kv.put(f"{P}profiles/p{i}", b"v%d" % i)
    await kv.put("/calico/ipam/v2/other", b"not followed")
    async with SyncCollector(Syncer(kv, [P])) as c:
        await c.wait_for(lambda: c.in_sync, what="in-sync")
        assert c.statuses == [SyncStatus.RESYNC, SyncStatus.IN_SYNC]
        assert c.state == {f"{P}profiles/p{i}": b"v%d" % i for i in range(5)}
        await kv.put(f"{P}profiles/p9", b"new")
        await kv.delete(f"{P}profiles/p0")
        await c.wait_for(lambda: f"{P}profiles/p0" not in c.state and f"{P}profiles/p9" in c.state)
        live = c.updates[5:]
        assert [(u.key, u.value) for u in live] == [(f"{P}profiles/p9", b"new"), (f"{P}profiles/p0", None)]
        assert live[0].revision < live[1].revision  # delivered in revision order


async def test_several_prefixes_merge(kv: KVStore) -> None:
    await kv.put(f"{P}nodes/n1", b"1")
    await kv.put("/calico/ipam/v2/host/n1/ipv4/block/198.18.0.0-26", b"b")
    async with SyncCollector(Syncer(kv, [P, "/calico/ipam/v2/"])) as c:
        await c.wait_for(lambda: c.in_sync and len(c.state) == 2)
        await kv.put("/calico/ipam/v2/host/n1/ipv4/block/198.18.0.64-26", b"b2")
        await c.wait_for(lambda: len(c.state) == 3)


async def test_resync_after_break_and_compaction_emits_exact_changes(kv: KVStore) -> None:
    flaky = FlakyKV(kv)
    for i in range(4):
        await kv.put(f"{P}profiles/p{i}", b"old")
    async with SyncCollector(Syncer(flaky, [P], retry_delay=0.05)) as c:
        await c.wait_for(lambda: c.in_sync and len(c.state) == 4)
        flaky.down = True
        flaky.break_watches()
        await c.wait_for(lambda: c.statuses[-1] is SyncStatus.WAIT_FOR_DATASTORE, what="outage noticed")
        # Changes while the syncer is away: one changed, one deleted, one new, one untouched.
        await kv.put(f"{P}profiles/p1", b"changed")
        await kv.delete(f"{P}profiles/p2")
        rev = await kv.put(f"{P}profiles/p7", b"new")
        await kv.compact(rev)  # the history the watch would need is gone: a list is the only way back
        seen = len(c.updates)
        flaky.down = False
        await c.wait_for(lambda: c.in_sync and f"{P}profiles/p7" in c.state, what="resync")
        after = {(u.key, u.value) for u in c.updates[seen:]}
        assert after == {(f"{P}profiles/p1", b"changed"), (f"{P}profiles/p2", None), (f"{P}profiles/p7", b"new")}
        assert c.state == {
            f"{P}profiles/p0": b"old",
            f"{P}profiles/p1": b"changed",
            f"{P}profiles/p3": b"old",
            f"{P}profiles/p7": b"new",
        }
        assert c.statuses[-3:] == [SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC, SyncStatus.IN_SYNC]
        # And it is live again afterwards.
        await kv.put(f"{P}profiles/p8", b"live")
        await c.wait_for(lambda: f"{P}profiles/p8" in c.state)

"""Syncer against a real etcd under real faults: a cut link, a silent partition, compaction, kill -9 + restart.

After each fault the syncer must come back IN_SYNC and the consumer must hold exactly etcd's contents, having
been told exactly the changes (deletions included) made while it was away.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore
from calico.datastore.syncer import Syncer, SyncStatus
from tests.helpers.etcd_server import EtcdServer
from tests.helpers.sync_collector import SyncCollector
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = pytest.mark.heavy
P = "/calico/resources/v3/projectcalico.org/"


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def seed(kv: KVStore) -> None:
    for i in range(4):
        await kv.put(f"{P}profiles/p{i}", b"old")


async def change_while_away(kv: KVStore) -> int:
    await kv.put(f"{P}profiles/p1", b"changed")
    await kv.delete(f"{P}profiles/p2")
    return await kv.put(f"{P}profiles/p7", b"new")


EXPECTED_CHANGES = {(f"{P}profiles/p1", b"changed"), (f"{P}profiles/p2", None), (f"{P}profiles/p7", b"new")}
EXPECTED_STATE = {
    f"{P}profiles/p0": b"old",
    f"{P}profiles/p1": b"changed",
    f"{P}profiles/p3": b"old",
    f"{P}profiles/p7": b"new",
}


async def assert_recovered(c: SyncCollector, seen: int, kv: KVStore) -> None:
    await c.wait_for(lambda: c.in_sync and c.state == EXPECTED_STATE, timeout=30, what="recovery")
    assert {(u.key, u.value) for u in c.updates[seen:]} == EXPECTED_CHANGES
    await kv.put(f"{P}profiles/p8", b"live")
    await c.wait_for(lambda: f"{P}profiles/p8" in c.state, what="live after recovery")


@pytest.mark.parametrize("fault", ["cut", "blackhole"])
async def test_link_fault_then_compaction(etcd: EtcdServer, fault: str) -> None:
    proxy = await TcpProxy("127.0.0.1", etcd.client_port).start()
    direct = await EtcdKV.connect([etcd.endpoint])
    via_proxy = await EtcdKV.connect([proxy.endpoint], timeout=2.0)
    try:
        await seed(direct)
        async with SyncCollector(Syncer(via_proxy, [P], retry_delay=0.1)) as c:
            await c.wait_for(lambda: c.in_sync and len(c.state) == 4)
            seen = len(c.updates)
            proxy.cut() if fault == "cut" else proxy.blackhole()
            # The syncer must notice (no silent hang): it leaves IN_SYNC within a bounded time.
            await c.wait_for(lambda: not c.in_sync, timeout=20, what=f"{fault} detected")
            rev = await change_while_away(direct)
            await direct.compact(rev)
            proxy.restore()
            await assert_recovered(c, seen, direct)
    finally:
        await via_proxy.close()
        await direct.close()
        await proxy.close()


async def test_etcd_kill_and_restart(etcd: EtcdServer) -> None:
    kv = await EtcdKV.connect([etcd.endpoint], timeout=2.0)
    try:
        await seed(kv)
        async with SyncCollector(Syncer(kv, [P], retry_delay=0.1)) as c:
            await c.wait_for(lambda: c.in_sync and len(c.state) == 4)
            seen = len(c.updates)
            etcd.kill()
            await c.wait_for(lambda: not c.in_sync, timeout=20, what="etcd death noticed")
            assert c.statuses[-1] in (SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC)
            etcd.start()
            writer = await EtcdKV.connect([etcd.endpoint])
            try:
                rev = await change_while_away(writer)
                await writer.compact(rev)
                await assert_recovered(c, seen, writer)
            finally:
                await writer.close()
    finally:
        await kv.close()

"""Status reporting into the real embedded store: the leased status key, endpoint status, outages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.kv import DatastoreUnavailable, KVStore
from calico.felix.status import EndpointStatusID, StatusReporter, endpoint_status_key
from tests.felix.util import wait_until
from tests.helpers.flaky_kv import FlakyKV

HOST = "node1"
PREFIX = "/calico/felix/v2/no-region/host/node1/"


class CountingKV(FlakyKV):
    """Counts writes; `down` also fails writes and leases (FlakyKV fails only reads)."""

    def __init__(self, real: KVStore) -> None:
        super().__init__(real)
        self.puts: list[str] = []
        self.deletes: list[str] = []

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self._check()
        self.puts.append(key)
        return await super().put(key, value, lease)

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        self._check()
        self.deletes.append(key)
        return await super().delete(key, mod_revision)

    async def grant_lease(self, ttl: float) -> int:
        self._check()
        return await super().grant_lease(ttl)

    async def refresh_lease(self, lease: int) -> None:
        self._check()
        await super().refresh_lease(lease)


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[CountingKV]:
    real = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    wrapped = CountingKV(real)
    try:
        yield wrapped
    finally:
        await real.close()


def test_key_layout() -> None:
    eid = EndpointStatusID("k8s", "default/my-pod", "eth0")
    assert endpoint_status_key(HOST, eid) == PREFIX + "workload/k8s/default%2fmy-pod/endpoint/eth0"
    assert endpoint_status_key(HOST, eid, "region-r1").startswith("/calico/felix/v2/region-r1/host/node1/")


async def test_status_report_json_and_first_update(kv: CountingKV) -> None:
    rep = StatusReporter(kv, HOST, interval=30, ttl=90)
    assert await rep.report_once()
    status = await kv.get(PREFIX + "status")
    last = await kv.get(PREFIX + "last_reported_status")
    assert status is not None and last is not None
    doc = json.loads(status.value)
    assert set(doc) == {"time", "uptime", "first_update"} and doc["first_update"] is True
    assert doc["time"].endswith("Z") and doc["uptime"] >= 0
    assert status.lease != 0 and last.lease == 0
    assert await rep.report_once()
    status2 = await kv.get(PREFIX + "status")
    assert status2 is not None and json.loads(status2.value)["first_update"] is False
    assert status2.lease == status.lease  # the lease is refreshed, not replaced


async def test_status_key_vanishes_when_reporting_stops(kv: CountingKV) -> None:
    rep = StatusReporter(kv, HOST, interval=0.2, ttl=1.0)
    task = asyncio.create_task(rep.run())
    try:
        await wait_until(lambda: rep.reports >= 2)
        await asyncio.sleep(1.2)  # longer than the TTL: only the refreshes keep the key
        assert await kv.get(PREFIX + "status") is not None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def gone() -> bool:
        return await kv.get(PREFIX + "status") is None

    await wait_until(gone, timeout=3)
    assert await kv.get(PREFIX + "last_reported_status") is not None


async def test_datastore_outage_is_retried(kv: CountingKV) -> None:
    rep = StatusReporter(kv, HOST, interval=0.05, ttl=5)
    kv.down = True
    assert not await rep.report_once()
    task = asyncio.create_task(rep.run())
    try:
        await asyncio.sleep(0.2)
        assert rep.reports == 0 and not task.done()
        kv.down = False
        await wait_until(lambda: rep.reports >= 1)
        assert json.loads((await kv.get(PREFIX + "status")).value)["first_update"] is True  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_endpoint_status_writes_updates_deletes_and_cleans_leftovers(kv: CountingKV) -> None:
    a = EndpointStatusID("k8s", "default/a", "eth0")
    b = EndpointStatusID("openstack", "vm-1", "port-1")
    stale = PREFIX + "workload/k8s/default%2fold/endpoint/eth0"
    await kv.put(stale, b'{"status": "up"}')
    current: dict[EndpointStatusID, str] | None = None
    rep = StatusReporter(kv, HOST, endpoint_reporting=True, endpoint_delay=0.05, endpoint_source=lambda: current)

    await rep.endpoint_round()
    assert await kv.get(stale) is not None  # nothing trustworthy yet: touch nothing

    current = {a: "up", b: "down"}
    await rep.endpoint_round()
    assert await kv.get(stale) is None
    key_a, key_b = endpoint_status_key(HOST, a), endpoint_status_key(HOST, b)
    assert json.loads((await kv.get(key_a)).value) == {"status": "up"}  # type: ignore[union-attr]
    assert json.loads((await kv.get(key_b)).value) == {"status": "down"}  # type: ignore[union-attr]

    kv.puts.clear()
    await rep.endpoint_round()
    assert kv.puts == []  # unchanged: no writes

    current = {a: "error"}
    await rep.endpoint_round()
    assert kv.puts == [key_a]
    assert await kv.get(key_b) is None

    rep.reconfigure(interval=30, ttl=90, endpoint_reporting=False, endpoint_delay=0.05)
    await rep.endpoint_round()
    assert await kv.get(key_a) is None  # reporting off: our keys go


async def test_endpoint_status_is_rate_limited_and_coalesced(kv: CountingKV) -> None:
    a = EndpointStatusID("k8s", "default/a", "eth0")
    current = {a: "up"}
    rep = StatusReporter(kv, HOST, interval=0, endpoint_reporting=True, endpoint_delay=0.3,
                         endpoint_source=lambda: current)
    task = asyncio.create_task(rep.run())
    try:
        rep.poke()
        await wait_until(lambda: len(kv.puts) == 1)
        t0 = asyncio.get_running_loop().time()
        for i in range(20):  # flapping faster than the delay
            current = {a: "down" if i % 2 else "up"}
            rep.poke()
            await asyncio.sleep(0.02)
        current = {a: "error"}
        rep.poke()
        await asyncio.sleep(0.7)
        # At most one write per delay since the first (however slow this machine), and far fewer than the
        # 21 changes; the final status is what landed.
        elapsed = asyncio.get_running_loop().time() - t0
        assert 2 <= len(kv.puts) <= 2 + int(elapsed / 0.3)
        assert len(kv.puts) < 10
        assert json.loads((await kv.get(endpoint_status_key(HOST, a))).value) == {"status": "error"}  # type: ignore[union-attr]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_endpoint_write_failure_is_retried(kv: CountingKV) -> None:
    a = EndpointStatusID("k8s", "default/a", "eth0")
    rep = StatusReporter(kv, HOST, endpoint_reporting=True, endpoint_source=lambda: {a: "up"})
    kv.down = True
    await rep.endpoint_round()  # logged, not raised
    kv.down = False
    await rep.endpoint_round()
    assert await kv.get(endpoint_status_key(HOST, a)) is not None
    with pytest.raises(DatastoreUnavailable):  # sanity: the wrapper really failed writes
        kv.down = True
        await kv.put("/x", b"")

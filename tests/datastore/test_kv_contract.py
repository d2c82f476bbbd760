"""The `KVStore` contract, run against both backends via the `kv` fixture, plus backend-specific tests:
multi-process sharing for `EmbeddedKV`, TLS / auth / failure detection for `EtcdKV` (marked heavy)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdAuthError, EtcdKV
from calico.datastore.kv import (
    Compare,
    DatastoreUnavailable,
    Delete,
    EventType,
    KeyExists,
    KeyNotFound,
    KVStore,
    Put,
    ResyncNeeded,
    RevisionMismatch,
    WatchEvent,
)
from tests.helpers.etcd_server import EtcdServer, free_port

# --- helpers -----------------------------------------------------------------------------------


async def collect(it: AsyncIterator[list[WatchEvent]], n: int, timeout: float = 5.0) -> list[WatchEvent]:
    """At least `n` events from a watch (all of the last batch), or fail after `timeout` s."""
    out: list[WatchEvent] = []

    async def run() -> None:
        while len(out) < n:
            out.extend(await anext(it))

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        pytest.fail(f"got {len(out)} of {n} watch events in {timeout}s: {out}")
    return out


async def wait_for_delete(it: AsyncIterator[list[WatchEvent]], key: str, timeout: float) -> WatchEvent:
    async def run() -> WatchEvent:
        while True:
            for ev in await anext(it):
                if ev.key == key and ev.type is EventType.DELETE:
                    return ev

    return await asyncio.wait_for(run(), timeout)


def brief(events: list[WatchEvent]) -> list[tuple[str, str, bytes | None]]:
    return [(e.type.value, e.key, e.value) for e in events]


# --- get / list ----------------------------------------------------------------------------------


async def test_get_roundtrip_and_missing(kv: KVStore) -> None:
    assert await kv.get("/a") is None
    rev = await kv.put("/a", b"\x00\xffbinary")
    got = await kv.get("/a")
    assert got is not None
    assert (got.key, got.value, got.create_revision, got.mod_revision, got.lease) == (
        "/a", b"\x00\xffbinary", rev, rev, 0)


async def test_list_sorted_with_prefix_boundaries(kv: KVStore) -> None:
    for key in ["/a/bc", "/a/b/y", "/b", "/a/b", "/a/b/x", "/a/a", "/a/b\u00e9"]:
        await kv.put(key, key.encode())
    items, rev = await kv.list("/a/b/")
    assert [i.key for i in items] == ["/a/b/x", "/a/b/y"]
    assert rev == await kv.revision()
    items, _ = await kv.list("/a/b")
    assert [i.key for i in items] == ["/a/b", "/a/b/x", "/a/b/y", "/a/bc", "/a/b\u00e9"]
    assert [i.value for i in items] == [i.key.encode() for i in items]
    items, _ = await kv.list("")
    keys = [i.key for i in items]
    assert keys == sorted(keys, key=lambda k: k.encode()) and len(keys) == 7  # byte order, as etcd
    assert (await kv.list("/nothing/"))[0] == []


async def test_list_many_keys(kv: KVStore) -> None:
    n = 2500  # more than one etcd page
    for start in range(0, n, 100):
        await kv.txn([], [Put(f"/many/{i:05d}", b"x" * 10) for i in range(start, min(n, start + 100))])
    items, _ = await kv.list("/many/")
    assert [i.key for i in items] == [f"/many/{i:05d}" for i in range(n)]


# --- single-key CAS --------------------------------------------------------------------------------


async def test_create_existing_raises(kv: KVStore) -> None:
    rev = await kv.create("/k", b"1")
    with pytest.raises(KeyExists):
        await kv.create("/k", b"2")
    got = await kv.get("/k")
    assert got is not None and got.value == b"1" and got.mod_revision == rev


async def test_update_and_delete_missing_raise(kv: KVStore) -> None:
    with pytest.raises(KeyNotFound):
        await kv.update("/missing", b"x")
    with pytest.raises(KeyNotFound):
        await kv.update("/missing", b"x", mod_revision=0)  # 0 must never turn into a create
    with pytest.raises(KeyNotFound):
        await kv.delete("/missing")
    with pytest.raises(KeyNotFound):
        await kv.delete("/missing", mod_revision=5)
    assert await kv.get("/missing") is None


async def test_update_delete_with_revision(kv: KVStore) -> None:
    r1 = await kv.create("/k", b"1")
    r2 = await kv.update("/k", b"2", mod_revision=r1)
    assert r2 > r1
    with pytest.raises(RevisionMismatch):
        await kv.update("/k", b"3", mod_revision=r1)
    with pytest.raises(RevisionMismatch):
        await kv.delete("/k", mod_revision=r1)
    got = await kv.get("/k")
    assert got is not None and (got.value, got.create_revision, got.mod_revision) == (b"2", r1, r2)
    r3 = await kv.update("/k", b"3")  # unconditional update of an existing key
    r4 = await kv.delete("/k", mod_revision=r3)
    assert r4 > r3
    assert await kv.get("/k") is None
    r5 = await kv.create("/k", b"again")
    got = await kv.get("/k")
    assert got is not None and got.create_revision == r5  # re-created: new create revision


async def test_revisions_strictly_increase(kv: KVStore) -> None:
    start = await kv.revision()
    revs = [
        await kv.put("/r/a", b"1"),
        await kv.create("/r/b", b"1"),
        await kv.update("/r/a", b"2"),
        await kv.delete("/r/b"),
        (await kv.txn([], [Put("/r/c", b"1")])).revision,
        await kv.put("/r/a", b"3"),
    ]
    assert revs == sorted(set(revs)) and revs[0] > start
    assert await kv.revision() == revs[-1]


# --- transactions --------------------------------------------------------------------------------


async def test_txn_all_or_nothing_one_revision(kv: KVStore) -> None:
    r_a = await kv.put("/t/a", b"a1")
    before = await kv.revision()
    failed = await kv.txn(
        [Compare("/t/a", r_a), Compare("/t/new", 1234)], [Put("/t/a", b"a2"), Put("/t/b", b"b")]
    )
    assert not failed.succeeded and failed.revision == before
    assert (await kv.get("/t/a")).value == b"a1"  # type: ignore[union-attr]
    assert await kv.get("/t/b") is None
    assert await kv.revision() == before

    ok = await kv.txn(
        [Compare("/t/a", r_a), Compare("/t/b", 0)],  # 0: "/t/b" must be absent
        [Put("/t/a", b"a2"), Put("/t/b", b"b"), Delete("/t/absent")],
    )
    assert ok.succeeded and ok.revision == before + 1
    a, b = await kv.get("/t/a"), await kv.get("/t/b")
    assert a is not None and b is not None
    assert a.mod_revision == b.mod_revision == ok.revision

    ok2 = await kv.txn([Compare("/t/b", ok.revision)], [Delete("/t/b"), Put("/t/c", b"c")])
    assert ok2.succeeded and ok2.revision == ok.revision + 1
    assert await kv.get("/t/b") is None
    # compare-absent fails for an existing key
    assert not (await kv.txn([Compare("/t/a", 0)], [Put("/t/x", b"x")])).succeeded


async def test_txn_rejects_duplicate_keys(kv: KVStore) -> None:
    with pytest.raises(ValueError):
        await kv.txn([], [Put("/d", b"1"), Delete("/d")])


# --- leases --------------------------------------------------------------------------------------


async def test_lease_expiry_deletes_with_event(kv: KVStore) -> None:
    lease = await kv.grant_lease(1)
    rev = await kv.put("/l/k", b"v", lease=lease)
    await kv.put("/l/plain", b"v")
    got = await kv.get("/l/k")
    assert got is not None and got.lease == lease
    t0 = time.monotonic()
    async with contextlib.aclosing(kv.watch("/l/", rev)) as it:
        ev = await wait_for_delete(it, "/l/k", timeout=8)
    assert ev.value is None and ev.mod_revision > rev
    assert time.monotonic() - t0 >= 0.5  # not deleted early
    assert await kv.get("/l/k") is None
    assert await kv.get("/l/plain") is not None
    with pytest.raises(KeyNotFound):
        await kv.refresh_lease(lease)
    with pytest.raises(KeyNotFound):
        await kv.put("/l/again", b"v", lease=lease)


async def test_lease_refresh_keeps_alive(kv: KVStore) -> None:
    lease = await kv.grant_lease(1)
    await kv.put("/l/k", b"v", lease=lease)
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        await kv.refresh_lease(lease)
        await asyncio.sleep(0.2)
        assert await kv.get("/l/k") is not None
    with pytest.raises(KeyNotFound):
        await kv.refresh_lease(987654321)


async def test_lease_revoke_deletes_keys(kv: KVStore) -> None:
    lease = await kv.grant_lease(30)
    await kv.put("/l/a", b"1", lease=lease)
    rev = await kv.put("/l/b", b"2", lease=lease)
    await kv.revoke_lease(lease)
    assert await kv.get("/l/a") is None and await kv.get("/l/b") is None
    async with contextlib.aclosing(kv.watch("/l/", rev + 1)) as it:
        events = await collect(it, 2)
    assert brief(events) == [("delete", "/l/a", None), ("delete", "/l/b", None)]
    assert events[0].mod_revision == events[1].mod_revision  # one revision for the whole revoke
    with pytest.raises(KeyNotFound):
        await kv.refresh_lease(lease)
    await kv.revoke_lease(lease)  # idempotent


async def test_put_without_lease_detaches(kv: KVStore) -> None:
    lease = await kv.grant_lease(30)
    await kv.put("/l/a", b"1", lease=lease)
    await kv.put("/l/a", b"2")
    await kv.revoke_lease(lease)
    got = await kv.get("/l/a")
    assert got is not None and got.value == b"2" and got.lease == 0


# --- watch ---------------------------------------------------------------------------------------


async def test_watch_replays_history_then_streams(kv: KVStore) -> None:
    r1 = await kv.put("/w/a", b"1")
    await kv.put("/w/b", b"1")
    await kv.put("/other", b"x")  # outside the prefix
    await kv.update("/w/a", b"2")
    await kv.delete("/w/b")
    async with contextlib.aclosing(kv.watch("/w/", r1)) as it:
        past = await collect(it, 4)
        assert brief(past) == [
            ("put", "/w/a", b"1"), ("put", "/w/b", b"1"), ("put", "/w/a", b"2"), ("delete", "/w/b", None)]
        revs = [e.mod_revision for e in past]
        assert revs == sorted(revs) and revs[0] == r1

        r_live = await kv.put("/w/c", b"live")
        await kv.txn([], [Put("/w/d", b"d"), Delete("/w/a")])
        live = await collect(it, 3)
        assert brief(live) == [("put", "/w/c", b"live"), ("put", "/w/d", b"d"), ("delete", "/w/a", None)]
        assert live[0].mod_revision == r_live
        assert live[1].mod_revision == live[2].mod_revision == r_live + 1


async def test_watch_replays_large_history(kv: KVStore) -> None:
    first = 0
    for start in range(0, 2500, 100):  # batches larger than one backend poll / response
        res = await kv.txn([], [Put(f"/big/{i:05d}", b"v") for i in range(start, start + 100)])
        first = first or res.revision
    async with contextlib.aclosing(kv.watch("/big/", first)) as it:
        events = await collect(it, 2500, timeout=15)
    assert [e.key for e in events] == [f"/big/{i:05d}" for i in range(2500)]
    assert [e.mod_revision for e in events] == [first + i // 100 for i in range(2500)]


async def test_watch_prefix_boundary(kv: KVStore) -> None:
    rev = await kv.revision()
    async with contextlib.aclosing(kv.watch("/a/b/", rev + 1)) as it:
        await kv.put("/a/bc", b"no")
        await kv.put("/a/b", b"no")
        await kv.put("/a/b/x", b"yes")
        assert brief(await collect(it, 1)) == [("put", "/a/b/x", b"yes")]


async def test_watch_from_future_revision_waits(kv: KVStore) -> None:
    rev = await kv.revision()
    async with contextlib.aclosing(kv.watch("/f/", rev + 2)) as it:
        await kv.put("/f/skipped", b"1")  # rev + 1: before the watch start
        await kv.put("/f/seen", b"2")
        assert brief(await collect(it, 1)) == [("put", "/f/seen", b"2")]


async def test_watch_from_compacted_revision(kv: KVStore) -> None:
    r1 = await kv.put("/c/a", b"1")
    await kv.put("/c/a", b"2")
    r3 = await kv.put("/c/a", b"3")
    await kv.compact(r3)
    with pytest.raises(ResyncNeeded):
        async with contextlib.aclosing(kv.watch("/c/", r1)) as it:
            await asyncio.wait_for(anext(it), 5)
    async with contextlib.aclosing(kv.watch("/c/", r3)) as it:  # the compact revision itself is kept
        assert brief(await collect(it, 1)) == [("put", "/c/a", b"3")]
    await kv.compact(r1)  # older than the current compaction: no-op
    with pytest.raises(ValueError):
        await kv.compact(r3 + 1000)  # future revision
    got = await kv.get("/c/a")
    assert got is not None and got.value == b"3"  # compaction keeps current state


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_cas_exactly_one_wins(kv: KVStore) -> None:
    await kv.create("/cas", b"start")
    for rnd in range(8):
        cur = await kv.get("/cas")
        assert cur is not None
        results = await asyncio.gather(
            *(kv.update("/cas", f"{rnd}-{i}".encode(), mod_revision=cur.mod_revision) for i in range(16)),
            return_exceptions=True,
        )
        wins = [r for r in results if isinstance(r, int)]
        assert len(wins) == 1, results
        assert all(isinstance(r, RevisionMismatch) for r in results if not isinstance(r, int))
        now = await kv.get("/cas")
        assert now is not None and now.mod_revision == wins[0]


async def test_closed_store_raises(kv: KVStore) -> None:
    await kv.close()
    with pytest.raises(DatastoreUnavailable):
        await kv.get("/x")


# --- embedded only: several processes on one file ---------------------------------------------------

_CHILD = """
import asyncio, sys
from calico.datastore.embedded import EmbeddedKV
from calico.datastore.kv import RevisionMismatch

async def main(path: str, mode: str, n: int) -> None:
    kv = await EmbeddedKV.open(path)
    try:
        if mode == "incr":
            done = 0
            while done < n:
                cur = await kv.get("/counter")
                try:
                    await kv.update("/counter", str(int(cur.value) + 1).encode(), mod_revision=cur.mod_revision)
                    done += 1
                except RevisionMismatch:
                    pass
        else:
            for i in range(n):
                await kv.put(f"/xproc/{i:04d}", str(i).encode())
    finally:
        await kv.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def _run_children(path: Path, mode: str, n: int, count: int) -> None:
    procs = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, str(path), mode, str(n))
        for _ in range(count)
    ]
    try:
        codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), 60)
        assert codes == [0] * count
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def test_embedded_two_processes_cas_counter(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with await EmbeddedKV.open(str(path)) as kv:
        await kv.create("/counter", b"0")
        # A third contender in this process, on a separate connection.
        stop = asyncio.Event()
        mine = 0

        async def local() -> None:
            nonlocal mine
            while not stop.is_set():
                cur = await kv.get("/counter")
                assert cur is not None
                with contextlib.suppress(RevisionMismatch):
                    await kv.update("/counter", str(int(cur.value) + 1).encode(), mod_revision=cur.mod_revision)
                    mine += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(local())
        try:
            await _run_children(path, "incr", 300, 2)
        finally:
            stop.set()
            await task
        got = await kv.get("/counter")
        assert got is not None and int(got.value) == 600 + mine


async def test_embedded_watch_sees_other_process(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with await EmbeddedKV.open(str(path)) as kv:
        rev = await kv.revision()
        async with contextlib.aclosing(kv.watch("/xproc/", rev + 1)) as it:
            await _run_children(path, "put", 50, 1)
            events = await collect(it, 50)
    assert [e.key for e in events] == [f"/xproc/{i:04d}" for i in range(50)]
    assert [e.mod_revision for e in events] == list(range(rev + 1, rev + 51))


async def test_embedded_lease_expiry_seen_by_other_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    async with await EmbeddedKV.open(path) as a, await EmbeddedKV.open(path) as b:
        lease = await a.grant_lease(0.3)
        rev = await a.put("/l/k", b"v", lease=lease)
        await a.close()  # the granting process is gone; the watcher on `b` must still sweep it
        async with contextlib.aclosing(b.watch("/l/", rev + 1)) as it:
            await wait_for_delete(it, "/l/k", timeout=5)


async def test_embedded_persists_and_auto_compacts(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    async with await EmbeddedKV.open(path, history_revisions=300) as kv:
        first = await kv.put("/p/0", b"0")
        for i in range(1, 600):
            await kv.put(f"/p/{i}", b"x")
        last = await kv.revision()
    async with await EmbeddedKV.open(path) as kv:
        assert await kv.revision() == last
        assert len((await kv.list("/p/"))[0]) == 600
        with pytest.raises(ResyncNeeded):  # auto-retention dropped the old history
            async with contextlib.aclosing(kv.watch("/p/", first)) as it:
                await anext(it)
        async with contextlib.aclosing(kv.watch("/p/", last - 100)) as it:
            assert len(await collect(it, 101)) == 101


# --- etcd only: TLS, auth, failures ---------------------------------------------------------------

EtcdFactory = Callable[..., EtcdServer]


@pytest.mark.heavy
async def test_etcd_tls_client_cert(etcd_factory: EtcdFactory) -> None:
    server = etcd_factory(tls=True)
    async with await EtcdKV.connect([server.endpoint], **server.connect_kwargs()) as kv:
        rev = await kv.put("/tls", b"ok")
        assert (await kv.get("/tls")).mod_revision == rev  # type: ignore[union-attr]
    assert server.tls is not None
    with pytest.raises(DatastoreUnavailable):  # server demands a client certificate
        await EtcdKV.connect([server.endpoint], ca_cert=server.tls.ca_cert, timeout=1)
    with pytest.raises(DatastoreUnavailable):  # plaintext to a TLS port
        await EtcdKV.connect([server.endpoint.replace("https", "http")], timeout=1)


@pytest.mark.heavy
async def test_etcd_username_password(etcd_factory: EtcdFactory) -> None:
    server = etcd_factory(auth=True)
    async with await EtcdKV.connect([server.endpoint], **server.connect_kwargs()) as kv:
        await kv.put("/auth", b"ok")
        # The simple token dies with the server; the client must re-authenticate by itself.
        server.stop()
        server.start()
        await _eventually(lambda: kv.get("/auth"), timeout=10)
        assert (await kv.get("/auth")).value == b"ok"  # type: ignore[union-attr]
    with pytest.raises(EtcdAuthError, match="authentication"):
        await EtcdKV.connect([server.endpoint], username="root", password="wrong")
    async with await EtcdKV.connect([server.endpoint]) as anon:
        with pytest.raises(EtcdAuthError):
            await anon.get("/auth")


@pytest.mark.heavy
async def test_etcd_kill_breaks_watch_then_recovers(etcd_factory: EtcdFactory) -> None:
    server = etcd_factory()
    async with await EtcdKV.connect([server.endpoint]) as kv:
        rev = await kv.put("/k/a", b"1")
        async with contextlib.aclosing(kv.watch("/k/", rev)) as it:
            assert len(await collect(it, 1)) == 1
            server.kill()
            t0 = time.monotonic()
            with pytest.raises((ResyncNeeded, DatastoreUnavailable)):
                await asyncio.wait_for(anext(it), 10)
            assert time.monotonic() - t0 < 10
        with pytest.raises(DatastoreUnavailable):
            await kv.get("/k/a")
        server.start()
        async with await EtcdKV.connect([server.endpoint]) as fresh:
            assert (await fresh.get("/k/a")).value == b"1"  # type: ignore[union-attr]
        await _eventually(lambda: kv.put("/k/b", b"2"), timeout=10)  # the old client reconnects too


@pytest.mark.heavy
async def test_etcd_hung_server_detected(etcd_factory: EtcdFactory) -> None:
    server = etcd_factory()
    async with await EtcdKV.connect([server.endpoint], timeout=2) as kv:
        kv.watch_probe_interval = 1.0
        rev = await kv.revision()
        async with contextlib.aclosing(kv.watch("/h/", rev + 1)) as it:
            server.pause()  # connection stays open, nobody answers
            try:
                t0 = time.monotonic()
                with pytest.raises(ResyncNeeded):
                    await asyncio.wait_for(anext(it), 10)
                assert time.monotonic() - t0 < 5
                with pytest.raises(DatastoreUnavailable):
                    await kv.get("/h/x")
            finally:
                server.resume()
        await _eventually(lambda: kv.get("/h/x"), timeout=10)


@pytest.mark.heavy
async def test_etcd_first_endpoint_dead(etcd_server: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with await EtcdKV.connect([dead, etcd_server.endpoint]) as kv:
        rev = await kv.put("/multi", b"1")
        assert (await kv.get("/multi")).mod_revision == rev  # type: ignore[union-attr]
        await kv.delete("/multi")
    with pytest.raises(DatastoreUnavailable):
        await EtcdKV.connect([dead], timeout=1)


async def _eventually(fn: Callable[[], Awaitable[object]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await fn()
            return
        except DatastoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)

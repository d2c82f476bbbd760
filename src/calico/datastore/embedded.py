"""`KVStore` in one SQLite file (WAL mode) that several processes on one machine can share.

In: a file path (created if missing). Out: an `EmbeddedKV` with etcd-like semantics: a global revision
counter starting at 1, create/mod revisions per key, CAS on mod revision, multi-key txns that take one
revision, leases with TTLs, a watchable history and compaction.

Tables: `meta` (revision, compact_revision), `kv` (current keys), `history` (one row per change:
revision, seq within the revision, key, value or NULL for a delete), `leases` (id, ttl, expires_at
wall-clock seconds), `rev_times` (wall-clock time of every 256th revision, for time-based retention).
Keys are stored as UTF-8 BLOBs so SQLite's memcmp ordering equals etcd's byte ordering, and a prefix
is listed as the range `prefix <= key < prefix_end`.

Concurrency: every write runs in `BEGIN IMMEDIATE` (one writer at a time across processes; others wait up
to `busy_timeout`), readers use WAL snapshots and never block. Each store object owns one connection,
used only by its own single worker thread; the event loop submits one short call at a time to it.

Leases: expiry is swept lazily by whoever touches the store: every write sweeps first, every read and
every watcher poll checks for an overdue lease (one indexed query) and sweeps if there is one. Each
expired lease is removed in its own revision, with DELETE events for its keys, like etcd's revoke.
Lease expiry uses wall-clock time, since the file is shared between processes (and survives restarts).

Watch: a watcher polls `history` for rows after its cursor at once when this same store object writes or
(inotify on the WAL file, `filewatch.py`) when any other process commits; polling on a timer is the safety net:
every 250 ms with inotify, else every 2 ms after activity backing off to 5 ms. A watcher that has caught up
does not poll again until woken (each commit wakes every watcher of every process sharing the file).
`ResyncNeeded` when the cursor is older than the compact revision.

History retention (automatic compaction), checked every 256 revisions: a revision's history is dropped
once it is more than `history_revisions` (default 100 000) revisions old or older than
`history_seconds` (default 600 s, measured at 256-revision granularity). `compact()` drops more on demand.

Durability: `synchronous=NORMAL` (WAL): safe against process crashes; the last commits may be lost on
power failure.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from calico.datastore.filewatch import FileChangeNotifier
from calico.datastore.kv import (
    Compare,
    DatastoreUnavailable,
    Delete,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    KVError,
    KVStore,
    Put,
    ResyncNeeded,
    RevisionMismatch,
    TxnOp,
    TxnResult,
    WatchEvent,
)

T = TypeVar("T")

POLL_MIN = 0.002  # watcher poll interval right after activity (s)
POLL_MAX = 0.005  # idle watchers back off to this (s) when only polling tells them of other processes' writes
# With inotify on the WAL file, other processes' commits wake watchers at once and polling is only a safety net:
# idle watchers then back off this far. 200 polls a second per watcher would cost dozens of watchers (a lab of
# 32 hosts has ~100) both cores.
POLL_MAX_NOTIFIED = 0.25
POLL_BATCH = 1000  # history rows per watcher poll
CHECKPOINT_EVERY = 256  # revisions between retention checks / rev_times rows
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 1), ('compact_revision', 0), ('schema', 1);
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
CREATE TABLE IF NOT EXISTS rev_times (revision INTEGER PRIMARY KEY, ts REAL NOT NULL);
"""


def _b(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _s(key: bytes) -> str:
    return bytes(key).decode("utf-8", "surrogateescape")


def _prefix_bounds(prefix: str) -> tuple[bytes, bytes | None]:
    """(start, end) with start <= key < end covering `prefix`; end None means unbounded."""
    start = _b(prefix)
    end = bytearray(start)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return start, bytes(end)
        end.pop()
    return start, None


def _range_sql(end: bytes | None) -> str:
    return "key >= ? AND key < ?" if end is not None else "key >= ?"


def _range_args(start: bytes, end: bytes | None) -> tuple[bytes, ...]:
    return (start, end) if end is not None else (start,)


class _Writer:
    """The changes of one BEGIN IMMEDIATE transaction. Changes made between two `new_group()` calls share
    one revision; a group with no changes takes no revision."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn = conn
        self.now = now
        self.start_rev = self.rev = _meta(conn, "revision")
        self._group_open = False
        self._seq = 0

    def new_group(self) -> None:
        self._group_open = False

    def _next(self) -> tuple[int, int]:
        if not self._group_open:
            self.rev += 1
            self._seq = 0
            self._group_open = True
        else:
            self._seq += 1
        return self.rev, self._seq

    def lease_alive(self, lease: int) -> bool:
        row = self.conn.execute("SELECT expires_at FROM leases WHERE id = ?", (lease,)).fetchone()
        return row is not None and row[0] > self.now

    def put(self, key: bytes, value: bytes, lease: int) -> None:
        if lease and not self.lease_alive(lease):
            raise KeyNotFound(f"lease {lease:x} not found or expired")
        rev, seq = self._next()
        self.conn.execute(
            "INSERT INTO kv (key, value, create_revision, mod_revision, lease) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision, "
            "lease = excluded.lease",
            (key, value, rev, rev, lease),
        )
        self.conn.execute("INSERT INTO history (revision, seq, key, value) VALUES (?, ?, ?, ?)",
                          (rev, seq, key, value))

    def delete(self, key: bytes) -> bool:
        if self.conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount == 0:
            return False
        rev, seq = self._next()
        self.conn.execute("INSERT INTO history (revision, seq, key, value) VALUES (?, ?, ?, NULL)",
                          (rev, seq, key))
        return True

    def delete_lease(self, lease: int) -> None:
        self.new_group()
        keys = self.conn.execute("SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,)).fetchall()
        for (key,) in keys:
            self.delete(key)
        self.conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        self.new_group()

    def mod_revision(self, key: bytes) -> int:
        row = self.conn.execute("SELECT mod_revision FROM kv WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0


def _meta(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()[0])


class EmbeddedKV(KVStore):
    """SQLite backend; build it with `await EmbeddedKV.open(path)`."""

    def __init__(self, path: str, history_revisions: int, history_seconds: float) -> None:
        self.path = path
        self.history_revisions = history_revisions
        self.history_seconds = history_seconds
        # One thread owns the connection; it is only ever touched from that thread.
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calico-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._files: FileChangeNotifier | None = None
        self._notified = False  # inotify tells us of other processes' commits

    @classmethod
    async def open(
        cls, path: str, *, history_revisions: int = 100_000, history_seconds: float = 600.0
    ) -> EmbeddedKV:
        self = cls(str(path), history_revisions, history_seconds)
        try:
            await self._run(self._open_conn)
        except BaseException:
            self._exec.shutdown(wait=False)
            raise
        # Other processes' commits append to the WAL file (which stays while our connection is open): wake our
        # watchers at once instead of at their next poll. Polling stays as the fallback.
        self._files = FileChangeNotifier(self.path + "-wal", self._notify)
        self._notified = self._files.start()
        return self

    # --- worker-thread plumbing ----------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise DatastoreUnavailable("embedded store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._exec, fn, *args)
        except sqlite3.OperationalError as e:  # locked past busy_timeout, I/O error, ...
            raise DatastoreUnavailable(f"sqlite {self.path}: {e}") from e
        except sqlite3.Error as e:
            raise KVError(f"sqlite {self.path}: {e}") from e

    def _open_conn(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")  # serialise schema creation between processes
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    @property
    def _c(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def _write(self, fn: Callable[[_Writer], T]) -> T:
        """Run `fn` in a write transaction, after sweeping expired leases (worker thread)."""
        conn = self._c
        conn.execute("BEGIN IMMEDIATE")
        try:
            w = _Writer(conn, time.time())
            for (lease,) in conn.execute(
                "SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at", (w.now,)
            ).fetchall():
                w.delete_lease(lease)
            w.new_group()
            result = fn(w)
            if w.rev != w.start_rev:
                conn.execute("UPDATE meta SET value = ? WHERE name = 'revision'", (w.rev,))
                for r in range(w.start_rev + 1, w.rev + 1):
                    if r % CHECKPOINT_EVERY == 0:
                        self._retention(conn, r, w.now)
            conn.execute("COMMIT")
            return result
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _retention(self, conn: sqlite3.Connection, rev: int, now: float) -> None:
        conn.execute("INSERT OR REPLACE INTO rev_times (revision, ts) VALUES (?, ?)", (rev, now))
        cut = rev - self.history_revisions + 1
        row = conn.execute(
            "SELECT max(revision) FROM rev_times WHERE ts < ?", (now - self.history_seconds,)
        ).fetchone()
        if row[0] is not None:
            cut = max(cut, int(row[0]))
        self._compact_locked(conn, min(cut, rev))

    def _compact_locked(self, conn: sqlite3.Connection, revision: int) -> None:
        if revision <= _meta(conn, "compact_revision"):
            return
        conn.execute("DELETE FROM history WHERE revision < ?", (revision,))
        conn.execute("DELETE FROM rev_times WHERE revision < ?", (revision,))
        conn.execute("UPDATE meta SET value = ? WHERE name = 'compact_revision'", (revision,))

    def _sweep_if_due(self) -> None:
        """Cheap check before reads; takes the write lock only when some lease is overdue."""
        if self._c.execute("SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (time.time(),)).fetchone():
            self._write(lambda w: None)

    def _notify(self) -> None:
        # Wake this object's watchers now rather than at their next poll.
        self._wake.set()
        self._wake = asyncio.Event()

    async def _write_op(self, fn: Callable[[_Writer], T]) -> T:
        try:
            return await self._run(self._write, fn)
        finally:
            if not self._closed:
                self._notify()

    # --- reads ---------------------------------------------------------------------------------

    def _get(self, key: bytes) -> KeyValue | None:
        self._sweep_if_due()
        row = self._c.execute(
            "SELECT key, value, create_revision, mod_revision, lease FROM kv WHERE key = ?", (key,)
        ).fetchone()
        return KeyValue(_s(row[0]), bytes(row[1]), row[2], row[3], row[4]) if row else None

    async def get(self, key: str) -> KeyValue | None:
        return await self._run(self._get, _b(key))

    def _list(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._sweep_if_due()
        start, end = _prefix_bounds(prefix)
        conn = self._c
        conn.execute("BEGIN")  # one snapshot for rows and revision
        try:
            rows = conn.execute(
                "SELECT key, value, create_revision, mod_revision, lease FROM kv "
                f"WHERE {_range_sql(end)} ORDER BY key",
                _range_args(start, end),
            ).fetchall()
            rev = _meta(conn, "revision")
        finally:
            conn.execute("COMMIT")
        return [KeyValue(_s(k), bytes(v), c, m, ls) for k, v, c, m, ls in rows], rev

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        return await self._run(self._list, prefix)

    def _revision(self) -> int:
        self._sweep_if_due()
        return _meta(self._c, "revision")

    async def revision(self) -> int:
        return await self._run(self._revision)

    # --- writes --------------------------------------------------------------------------------

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        k, v = _b(key), bytes(value)

        def op(w: _Writer) -> int:
            if w.mod_revision(k):
                raise KeyExists(key)
            w.put(k, v, lease)
            return w.rev

        return await self._write_op(op)

    async def update(self, key: str, value: bytes, mod_revision: int | None = None, lease: int = 0) -> int:
        k, v = _b(key), bytes(value)

        def op(w: _Writer) -> int:
            _check_guard(key, w.mod_revision(k), mod_revision)
            w.put(k, v, lease)
            return w.rev

        return await self._write_op(op)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        k, v = _b(key), bytes(value)

        def op(w: _Writer) -> int:
            w.put(k, v, lease)
            return w.rev

        return await self._write_op(op)

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        k = _b(key)

        def op(w: _Writer) -> int:
            _check_guard(key, w.mod_revision(k), mod_revision)
            w.delete(k)
            return w.rev

        return await self._write_op(op)

    async def delete_prefix(self, prefix: str) -> int:
        """Not part of `KVStore`: remove every key under `prefix` in one revision (tests, tooling)."""
        start, end = _prefix_bounds(prefix)

        def op(w: _Writer) -> int:
            keys = w.conn.execute(
                f"SELECT key FROM kv WHERE {_range_sql(end)} ORDER BY key", _range_args(start, end)
            ).fetchall()
            for (k,) in keys:
                w.delete(k)
            return w.rev

        return await self._write_op(op)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[TxnOp]) -> TxnResult:
        keys = [op.key for op in ops if isinstance(op, Put | Delete)]
        if len(keys) != len(set(keys)):
            raise ValueError("a txn may touch each key at most once")  # as etcd
        cmps = [(_b(c.key), c.mod_revision) for c in compares]
        plan = [(_b(op.key), op) for op in ops]

        def run(w: _Writer) -> TxnResult:
            if not all(w.mod_revision(k) == want for k, want in cmps):
                return TxnResult(False, w.rev)
            for k, op in plan:
                if isinstance(op, Put):
                    w.put(k, bytes(op.value), op.lease)
                else:
                    w.delete(k)
            return TxnResult(True, w.rev)

        return await self._write_op(run)

    # --- leases --------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise ValueError("lease TTL must be positive")

        def op(w: _Writer) -> int:
            cur = w.conn.execute("INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl, w.now + ttl))
            return int(cur.lastrowid or 0)

        return await self._write_op(op)

    async def refresh_lease(self, lease: int) -> None:
        def op(w: _Writer) -> None:
            # Expired leases were already swept at the start of this transaction.
            cur = w.conn.execute("UPDATE leases SET expires_at = ? + ttl WHERE id = ?", (w.now, lease))
            if cur.rowcount == 0:
                raise KeyNotFound(f"lease {lease:x} expired or unknown")

        await self._write_op(op)

    async def revoke_lease(self, lease: int) -> None:
        await self._write_op(lambda w: w.delete_lease(lease))  # unknown lease: no-op, as in EtcdKV

    # --- watch ---------------------------------------------------------------------------------

    def _poll(
        self, start: bytes, end: bytes | None, cur_rev: int, cur_seq: int
    ) -> tuple[list[tuple[int, int, bytes, bytes | None]], int, int, int | None]:
        """Rows after cursor (cur_rev, cur_seq) under the prefix; new cursor; compact revision if the
        cursor fell behind it (worker thread)."""
        self._sweep_if_due()
        conn = self._c
        conn.execute("BEGIN")
        try:
            rev = _meta(conn, "revision")
            compacted = _meta(conn, "compact_revision")
            if cur_rev < compacted:
                return [], cur_rev, cur_seq, compacted
            if cur_rev > rev:
                return [], cur_rev, cur_seq, None
            rows = conn.execute(
                "SELECT revision, seq, key, value FROM history "
                "WHERE revision >= ? AND (revision > ? OR seq > ?) AND revision <= ? "
                f"AND {_range_sql(end)} ORDER BY revision, seq LIMIT ?",
                (cur_rev, cur_rev, cur_seq, rev, *_range_args(start, end), POLL_BATCH),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        if len(rows) < POLL_BATCH:
            return rows, rev + 1, -1, None
        return rows, rows[-1][0], rows[-1][1], None

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        start, end = _prefix_bounds(prefix)
        cur_rev, cur_seq = max(1, start_revision), -1
        # With inotify every commit wakes us, so once caught up we only wait (polling is a safety net); without
        # it, polls start quick after activity and back off.
        ceiling = POLL_MAX_NOTIFIED if self._notified else POLL_MAX
        rested = ceiling if self._notified else POLL_MIN
        interval = rested
        while True:
            wake = self._wake  # taken before polling so a write during the poll is not missed
            rows, cur_rev, cur_seq, compacted = await self._run(self._poll, start, end, cur_rev, cur_seq)
            if compacted is not None:
                raise ResyncNeeded(f"watch revision compacted (compact revision {compacted})")
            if rows:
                yield [
                    WatchEvent(
                        EventType.PUT if value is not None else EventType.DELETE,
                        _s(key),
                        bytes(value) if value is not None else None,
                        rev,
                    )
                    for rev, _seq, key, value in rows
                ]
                if len(rows) >= POLL_BATCH:
                    continue  # more history is waiting
                # Caught up as of that poll: a commit since has set `wake`, so no second poll is needed to know.
                interval = rested
            try:
                await asyncio.wait_for(wake.wait(), interval)
            except TimeoutError:
                interval = min(interval * 1.5, ceiling)

    # --- maintenance ---------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        def op(w: _Writer) -> None:
            if revision > w.rev:
                raise ValueError(f"cannot compact at future revision {revision} (current {w.rev})")
            self._compact_locked(w.conn, revision)

        await self._write_op(op)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        if self._closed:
            return
        if self._files is not None:
            self._files.stop()
        try:
            await self._run(self._close_conn)
        finally:
            self._closed = True
            self._exec.shutdown(wait=False)
            self._notify()


def _check_guard(key: str, current: int, expected: int | None) -> None:
    if current == 0:
        raise KeyNotFound(key)
    if expected is not None and current != expected:
        raise RevisionMismatch(f"{key}: expected mod revision {expected}, found {current}")

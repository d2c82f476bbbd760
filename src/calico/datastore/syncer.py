"""Syncer: a snapshot plus watch of datastore prefixes, as one ordered stream of updates.

Enters: a `KVStore` and the prefixes to follow. Leaves (through `updates()`), in order:
  - `StatusUpdate(WAIT_FOR_DATASTORE | RESYNC | IN_SYNC)`,
  - batches of `Update(key, value, revision)` (value None = deleted).
After any fault (compaction, lost connection, datastore restart) it lists again and emits exactly the
difference from what it had delivered (changed and new keys as puts, vanished keys as deletes), then IN_SYNC
again. Consumers therefore never see a gap and never need to compare snapshots themselves.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from calico.datastore.kv import DatastoreUnavailable, EventType, KVStore, ResyncNeeded

log = logging.getLogger(__name__)


class SyncStatus(enum.Enum):
    WAIT_FOR_DATASTORE = "wait-for-datastore"
    RESYNC = "resync"
    IN_SYNC = "in-sync"


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    status: SyncStatus


@dataclass(frozen=True, slots=True)
class Update:
    key: str
    value: bytes | None  # None: the key was deleted
    revision: int


SyncerEvent = StatusUpdate | list[Update]


class Syncer:
    """Follows `prefixes` of `kv` for as long as `updates()` is iterated.

    `retry_delay` bounds how fast it hammers a dead datastore (doubling up to `max_retry_delay`)."""

    def __init__(
        self,
        kv: KVStore,
        prefixes: Sequence[str],
        retry_delay: float = 0.1,
        max_retry_delay: float = 2.0,
    ) -> None:
        self.kv = kv
        self.prefixes = list(prefixes)
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        # What the consumer has been told: key -> (mod revision, value); used to diff after a resync.
        self._known: dict[str, tuple[int, bytes]] = {}
        self.resyncs = 0

    async def updates(self) -> AsyncIterator[SyncerEvent]:
        delay = self.retry_delay
        status: SyncStatus | None = None
        while True:
            try:
                snapshot, revisions = await self._list_all()
            except DatastoreUnavailable as e:
                if status is not SyncStatus.WAIT_FOR_DATASTORE:
                    status = SyncStatus.WAIT_FOR_DATASTORE
                    yield StatusUpdate(status)
                log.warning("syncer: datastore unavailable (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            delay = self.retry_delay
            if status is not SyncStatus.RESYNC:
                status = SyncStatus.RESYNC
                yield StatusUpdate(status)
            batch = self._diff(snapshot)
            if batch:
                yield batch
            status = SyncStatus.IN_SYNC
            yield StatusUpdate(status)
            try:
                async for batch in self._watch_all(revisions):
                    yield batch
            except (ResyncNeeded, DatastoreUnavailable) as e:
                self.resyncs += 1
                log.warning("syncer: watch interrupted (%s); resyncing", e)
                await asyncio.sleep(self.retry_delay)

    async def _list_all(self) -> tuple[dict[str, tuple[int, bytes]], list[int]]:
        snapshot: dict[str, tuple[int, bytes]] = {}
        revisions = []
        for prefix in self.prefixes:
            kvs, rev = await self.kv.list(prefix)
            snapshot.update((kv.key, (kv.mod_revision, kv.value)) for kv in kvs)
            revisions.append(rev)
        return snapshot, revisions

    def _diff(self, snapshot: dict[str, tuple[int, bytes]]) -> list[Update]:
        """Updates that take the consumer from what it knows to `snapshot`; remembers the snapshot."""
        out = [
            Update(key, value, rev)
            for key, (rev, value) in snapshot.items()
            if self._known.get(key, (None,))[0] != rev
        ]
        top = max((rev for rev, _ in snapshot.values()), default=0)
        out.extend(Update(key, None, top) for key in self._known.keys() - snapshot.keys())
        self._known = snapshot
        return out

    async def _watch_all(self, revisions: list[int]) -> AsyncIterator[list[Update]]:
        """Merge one watch per prefix into a single stream; the first failure ends them all."""
        queue: asyncio.Queue[list[Update] | BaseException] = asyncio.Queue()

        async def pump(prefix: str, start: int) -> None:
            try:
                async for events in self.kv.watch(prefix, start):
                    await queue.put(
                        [
                            Update(ev.key, ev.value if ev.type is EventType.PUT else None, ev.mod_revision)
                            for ev in events
                        ]
                    )
                await queue.put(ResyncNeeded(f"watch on {prefix} ended"))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any watch failure means: list again
                await queue.put(e if isinstance(e, ResyncNeeded | DatastoreUnavailable) else ResyncNeeded(str(e)))

        tasks = [asyncio.create_task(pump(p, rev + 1)) for p, rev in zip(self.prefixes, revisions, strict=True)]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                for up in item:
                    if up.value is None:
                        self._known.pop(up.key, None)
                    else:
                        self._known[up.key] = (up.revision, up.value)
                yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

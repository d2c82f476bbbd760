"""A real KVStore wrapped so a test can break its watches and make it unreachable on demand.

It delegates every call to the real backend; it only injects the two faults a syncer must survive, so the
syncer's resync logic can be driven on the embedded backend too (etcd faults are injected for real
elsewhere: proxy cuts, kill/restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from calico.datastore.kv import (
    Compare,
    DatastoreUnavailable,
    KeyValue,
    KVStore,
    ResyncNeeded,
    TxnOp,
    TxnResult,
    WatchEvent,
)


class FlakyKV(KVStore):
    def __init__(self, real: KVStore) -> None:
        self.real = real
        self.down = False
        self._generation = 0  # bumped to break every open watch

    def break_watches(self) -> None:
        self._generation += 1

    def _check(self) -> None:
        if self.down:
            raise DatastoreUnavailable("injected outage")

    async def get(self, key: str) -> KeyValue | None:
        self._check()
        return await self.real.get(key)

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        self._check()
        return await self.real.list(prefix)

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        return await self.real.create(key, value, lease)

    async def update(self, key: str, value: bytes, mod_revision: int | None = None, lease: int = 0) -> int:
        return await self.real.update(key, value, mod_revision, lease)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        return await self.real.put(key, value, lease)

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        return await self.real.delete(key, mod_revision)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[TxnOp]) -> TxnResult:
        return await self.real.txn(compares, ops)

    async def grant_lease(self, ttl: float) -> int:
        return await self.real.grant_lease(ttl)

    async def refresh_lease(self, lease: int) -> None:
        await self.real.refresh_lease(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self.real.revoke_lease(lease)

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        self._check()
        gen = self._generation
        inner = self.real.watch(prefix, start_revision).__aiter__()
        while True:
            nxt = asyncio.ensure_future(inner.__anext__())
            while not nxt.done():
                await asyncio.wait([nxt], timeout=0.02)
                if gen != self._generation:
                    nxt.cancel()
                    await asyncio.gather(nxt, return_exceptions=True)
                    aclose = getattr(inner, "aclose", None)
                    if aclose is not None:
                        await aclose()
                    raise ResyncNeeded("injected watch break")
            try:
                yield nxt.result()
            except StopAsyncIteration:
                return

    async def revision(self) -> int:
        return await self.real.revision()

    async def compact(self, revision: int) -> None:
        await self.real.compact(revision)

    async def close(self) -> None:
        await self.real.close()

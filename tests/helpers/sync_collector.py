"""Runs a Syncer in the background and keeps what it delivered, for tests to assert on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from calico.datastore.syncer import StatusUpdate, Syncer, SyncStatus, Update


class SyncCollector:
    def __init__(self, syncer: Syncer) -> None:
        self.syncer = syncer
        self.state: dict[str, bytes] = {}  # the consumer's view: key -> value
        self.updates: list[Update] = []
        self.statuses: list[SyncStatus] = []
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SyncCollector:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async for ev in self.syncer.updates():
            if isinstance(ev, StatusUpdate):
                self.statuses.append(ev.status)
            else:
                for up in ev:
                    self.updates.append(up)
                    if up.value is None:
                        self.state.pop(up.key, None)
                    else:
                        self.state[up.key] = up.value
            self._changed.set()

    @property
    def in_sync(self) -> bool:
        return bool(self.statuses) and self.statuses[-1] is SyncStatus.IN_SYNC

    async def wait_for(self, cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self._task is not None and self._task.done():
                self._task.result()  # re-raise the syncer's crash
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; statuses={self.statuses}, state={self.state}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

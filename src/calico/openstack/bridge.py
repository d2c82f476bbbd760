"""A private asyncio loop in a thread, so Neutron's synchronous driver code can use the async datastore.

Enters: coroutine functions taking the `Writer`. Leaves: their results, or their exceptions, in the calling
thread, within a timeout (`call`), or a future to cancel (`submit`, for watches). The connection is opened
lazily and reopened after a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from calico.datastore.config import DatastoreConfig, open_kv
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore, StoreError
from calico.openstack.writer import Writer
from calico.resources import ResourceError

T = TypeVar("T")


class DatastoreThread:
    def __init__(self, cfg: DatastoreConfig, name: str = "calico-datastore") -> None:
        self.cfg = cfg
        self._loop = asyncio.new_event_loop()
        self._kv: KVStore | None = None
        self._writer: Writer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    async def _get_writer(self) -> Writer:
        if self._writer is None:
            self._kv = await open_kv(self.cfg)
            self._writer = Writer(ResourceStore(self._kv))
        return self._writer

    async def _run(self, fn: Callable[[Writer], Awaitable[T]]) -> T:
        writer = await self._get_writer()
        try:
            return await fn(writer)
        except (StoreError, ResourceError, ValueError):  # about the data: the connection is fine
            raise
        except Exception:
            await self._reset()
            raise

    async def _reset(self) -> None:
        kv, self._kv, self._writer = self._kv, None, None
        if kv is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; dropped either way
                await kv.close()

    def call(self, fn: Callable[[Writer], Awaitable[T]], timeout: float = 30.0) -> T:
        return self.submit(fn).result(timeout)

    def submit(self, fn: Callable[[Writer], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start `fn` (long-running, such as a watch) without waiting; cancel the future to stop it."""
        return asyncio.run_coroutine_threadsafe(self._run(fn), self._loop)

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


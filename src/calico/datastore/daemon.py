"""How a datastore-driven daemon runs: open the datastore, work until SIGTERM/SIGINT, close it.

Enters: the datastore's configuration and the daemon's body (a coroutine function of the open `KVStore`).
Leaves: the process's exit status (1 when the datastore cannot be opened; the body's, or 0 once stopped by a
signal). Shared by `calico-bgp-daemon` and `calico-dhcp-agent`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from calico.datastore.config import DatastoreConfig, open_kv
from calico.datastore.kv import KVError, KVStore


async def serve(ds: DatastoreConfig, body: Callable[[KVStore], Awaitable[int]], log: logging.Logger) -> int:
    try:
        kv = await open_kv(ds)
    except (KVError, OSError) as e:
        log.error("cannot open the datastore (%s): %s", ds.describe(), e)
        return 1
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await body(kv)
    except asyncio.CancelledError:
        log.info("stopping")
        return 0
    finally:
        await kv.close()

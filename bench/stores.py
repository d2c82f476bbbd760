"""What the datastore benchmarks share: run a measurement on a fresh store (embedded, or a private single-member
etcd on 127.0.0.1, killed at the end) and print its rows as a two-column table."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore
from tests.helpers.etcd_server import EtcdServer

Rows = list[tuple[str, str]]


async def on_fresh_store(backend: str, prefix: str, run: Callable[[KVStore], Awaitable[Rows]]) -> Rows:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        if backend == "etcd":
            with EtcdServer(Path(tmp) / "etcd") as server:
                kv: KVStore = await EtcdKV.connect([server.endpoint])
                try:
                    return await run(kv)
                finally:
                    await kv.close()
        kv = await EmbeddedKV.open(str(Path(tmp) / "calico.db"))
        try:
            return await run(kv)
        finally:
            await kv.close()


def print_rows(title: str, rows: Rows) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    for k, val in rows:
        print(f"  {k.ljust(width)}  {val}")

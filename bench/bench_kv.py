"""KVStore micro-benchmarks for both backends (EmbeddedKV on a temp SQLite file, EtcdKV on a private etcd).

    .venv/bin/python bench/bench_kv.py [--json] [--backend embedded|etcd] [--samples 1000]

Measures per backend:
* puts/s, sequential: one `await kv.put()` after another (one request in flight), ~100-byte values;
  also with 32 puts in flight (asyncio.gather) for comparison. Each phase stops after 2000 puts or 5 s.
* watch latency p50/p99 (ms): a watcher task in this process; time from just before `put()` is called
  until the watcher receives the event (so it includes the put's own round trip).
  - "same": writer and watcher share one store object, puts back to back (~1000 samples). For EmbeddedKV
    this is the in-process wake-up path.
  - "other": the writer is a second store object (second connection; for EmbeddedKV equivalent to
    another process, so the watcher only learns by polling) and waits a random 0-30 ms before each put,
    so the watcher has time to back off as in real use (samples / 2).
* list time (ms) for 10 000 keys of 1 KB under one prefix: median of 5 `list()` calls.
Takes ~30 s. etcd is started by tests/helpers/etcd_server.py in a temp dir (127.0.0.1, free ports)
and killed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore, Put
from tests.helpers.etcd_server import EtcdServer

PUT_COUNT = 2000
PUT_SECONDS = 5.0
LIST_KEYS = 10_000
LIST_VALUE = 1024
TXN_BATCH = 100  # etcd's default --max-txn-ops is 128


async def bench_puts(kv: KVStore, concurrency: int) -> float:
    value = b"v" * 100
    start = time.perf_counter()
    done = 0
    while done < PUT_COUNT and time.perf_counter() - start < PUT_SECONDS:
        if concurrency == 1:
            await kv.put(f"/bench/put/{done:06d}", value)
            done += 1
        else:
            await asyncio.gather(*(kv.put(f"/bench/put/{done + i:06d}", value) for i in range(concurrency)))
            done += concurrency
    return done / (time.perf_counter() - start)


async def bench_watch(kv: KVStore, writer: KVStore, samples: int, idle_ms: float) -> tuple[float, float]:
    """(p50, p99) in ms of put-start -> event-received, `kv` watching and `writer` writing."""
    loop = asyncio.get_running_loop()
    rng = random.Random(1)
    waiting: dict[str, asyncio.Future[float]] = {}
    start_rev = await kv.revision() + 1

    async def watcher() -> None:
        async for batch in kv.watch("/bench/watch/", start_rev):
            now = time.perf_counter()
            for ev in batch:
                fut = waiting.pop(ev.key, None)
                if fut is not None and not fut.done():
                    fut.set_result(now)

    task = asyncio.create_task(watcher())
    lat: list[float] = []
    try:
        await asyncio.sleep(0.1)  # let the watch get established
        for i in range(samples):
            key = f"/bench/watch/{i:06d}"
            fut: asyncio.Future[float] = loop.create_future()
            waiting[key] = fut
            if idle_ms:
                await asyncio.sleep(rng.uniform(0, idle_ms) / 1000)
            t0 = time.perf_counter()
            await writer.put(key, b"x")
            arrived = await asyncio.wait_for(fut, 5)
            lat.append((arrived - t0) * 1000)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


async def bench_list(kv: KVStore) -> dict[str, float]:
    value = b"y" * LIST_VALUE
    for start in range(0, LIST_KEYS, TXN_BATCH):
        ops = [Put(f"/bench/list/{i:06d}", value) for i in range(start, min(LIST_KEYS, start + TXN_BATCH))]
        await kv.txn([], ops)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        items, _rev = await kv.list("/bench/list/")
        times.append((time.perf_counter() - t0) * 1000)
        assert len(items) == LIST_KEYS, len(items)
    return {"list_10k_ms_median": statistics.median(times), "list_10k_ms_min": min(times)}


async def run_backend(kv: KVStore, other: KVStore, samples: int) -> dict[str, float]:
    res: dict[str, float] = {}
    res["puts_per_s_sequential"] = await bench_puts(kv, 1)
    res["puts_per_s_32_in_flight"] = await bench_puts(kv, 32)
    res["watch_same_p50_ms"], res["watch_same_p99_ms"] = await bench_watch(kv, kv, samples, 0)
    res["watch_other_p50_ms"], res["watch_other_p99_ms"] = await bench_watch(kv, other, samples // 2, 30)
    res |= await bench_list(kv)
    return res


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--backend", choices=["embedded", "etcd"], action="append")
    ap.add_argument("--samples", type=int, default=1000, help="watch latency samples")
    args = ap.parse_args()
    backends = args.backend or ["embedded", "etcd"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="calico-bench-kv-") as tmp:
        if "embedded" in backends:
            path = str(Path(tmp) / "bench.db")
            async with await EmbeddedKV.open(path) as kv, await EmbeddedKV.open(path) as other:
                results["embedded"] = await run_backend(kv, other, args.samples)
        if "etcd" in backends:
            with EtcdServer(Path(tmp) / "etcd") as server:
                async with (
                    await EtcdKV.connect([server.endpoint]) as ekv,
                    await EtcdKV.connect([server.endpoint]) as eother,
                ):
                    results["etcd"] = await run_backend(ekv, eother, args.samples)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    cols = [
        ("puts/s seq", "puts_per_s_sequential", "{:.0f}"),
        ("puts/s 32 infl", "puts_per_s_32_in_flight", "{:.0f}"),
        ("watch same p50/p99 ms", "watch_same", ""),
        ("watch other p50/p99 ms", "watch_other", ""),
        ("list 10k x 1KB ms", "list_10k_ms_median", "{:.1f}"),
    ]

    def cell(res: dict[str, float], key: str, fmt: str) -> str:
        if fmt:
            return fmt.format(res[key])
        return f"{res[key + '_p50_ms']:.2f} / {res[key + '_p99_ms']:.2f}"

    print(f"{'backend':<10}" + "".join(f"{c[0]:>24}" for c in cols))
    for name, res in results.items():
        print(f"{name:<10}" + "".join(f"{cell(res, c[1], c[2]):>24}" for c in cols))


if __name__ == "__main__":
    asyncio.run(main())

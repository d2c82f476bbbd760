"""Syncer snapshot time for 10k WorkloadEndpoints, on etcd and on the embedded store.

Measures, per backend: time from a new Syncer starting to IN_SYNC with every key delivered (raw), and the
same plus decoding every value to a validated `Resource` (what Felix pays at start of day).

    .venv/bin/python bench/bench_syncer.py [--count 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.keys import RESOURCE_PREFIX
from calico.datastore.kv import KeyValue, KVStore, Put
from calico.datastore.store import decode
from calico.datastore.syncer import StatusUpdate, Syncer, SyncStatus
from tests.helpers.etcd_server import EtcdServer


def wep_json(i: int) -> bytes:
    node = f"node{i % 100}"
    name = f"{node}-k8s-pod{i}-eth0"
    return json.dumps(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "WorkloadEndpoint",
            "metadata": {
                "name": name,
                "namespace": f"ns{i % 20}",
                "uid": f"00000000-0000-0000-0000-{i:012d}",
                "creationTimestamp": "2026-11-28T00:00:00Z",
                "labels": {
                    "app": f"app{i % 50}",
                    "tier": ["web", "db", "cache"][i % 3],
                    "projectcalico.org/namespace": f"ns{i % 20}",
                    "projectcalico.org/orchestrator": "k8s",
                },
            },
            "spec": {
                "orchestrator": "k8s",
                "node": node,
                "pod": f"pod{i}",
                "endpoint": "eth0",
                "containerID": f"{i:032x}",
                "interfaceName": f"cali{i:011x}",
                "ipNetworks": [f"198.18.{i // 256 % 256}.{i % 256}/32"],
                "profiles": [f"kns.ns{i % 20}"],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            },
        },
        separators=(",", ":"),
    ).encode()


async def load(kv: KVStore, count: int) -> None:
    batch: list[Put] = []
    for i in range(count):
        ns = f"ns{i % 20}"
        batch.append(Put(f"{RESOURCE_PREFIX}workloadendpoints/{ns}/node{i % 100}-k8s-pod{i}-eth0", wep_json(i)))
        if len(batch) == 100:  # etcd's default max ops per txn is 128
            await kv.txn([], batch)
            batch = []
    if batch:
        await kv.txn([], batch)


async def snapshot(kv: KVStore, count: int, parse: bool) -> float:
    t0 = time.perf_counter()
    got = 0
    async for ev in Syncer(kv, [RESOURCE_PREFIX]).updates():
        if isinstance(ev, StatusUpdate):
            if ev.status is SyncStatus.IN_SYNC:
                break
            continue
        got += len(ev)
        if parse:
            for up in ev:
                assert up.value is not None
                decode(KeyValue(up.key, up.value, up.revision, up.revision))
    elapsed = time.perf_counter() - t0
    assert got == count, (got, count)
    return elapsed


async def bench_backend(kv: KVStore, count: int, runs: int) -> dict[str, float]:
    await load(kv, count)
    raw = [await snapshot(kv, count, parse=False) for _ in range(runs)]
    parsed = [await snapshot(kv, count, parse=True) for _ in range(runs)]
    return {"raw_s": statistics.median(raw), "parsed_s": statistics.median(parsed)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-syncer-") as tmp:
        with EtcdServer(Path(tmp) / "etcd") as server:
            kv = await EtcdKV.connect([server.endpoint])
            try:
                results["etcd"] = await bench_backend(kv, args.count, args.runs)
            finally:
                await kv.close()
        ekv = await EmbeddedKV.open(str(Path(tmp) / "store.db"))
        try:
            results["embedded"] = await bench_backend(ekv, args.count, args.runs)
        finally:
            await ekv.close()
    if args.json:
        print(json.dumps({"count": args.count, **results}))
        return
    print(f"syncer snapshot of {args.count} WorkloadEndpoints (median of {args.runs})")
    print(f"{'backend':<10} {'to IN_SYNC (raw)':>18} {'+ decode to Resource':>22}   goal (etcd): <= 1 s")
    for name, r in results.items():
        print(f"{name:<10} {r['raw_s'] * 1000:>15.0f} ms {r['parsed_s'] * 1000:>19.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())

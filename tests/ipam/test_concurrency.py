"""Four processes allocating 1,000 addresses each, at once, into one pool that they nearly fill (so hosts race for
blocks, two processes share one host's blocks, and the last addresses are borrowed): against one embedded SQLite
file, and against a three-member etcd cluster with the member every client talks to killed midway.
Zero duplicates, zero leaks: what the workers report is exactly what the datastore holds, and once a
WorkloadEndpoint owns each address `ipam check` finds no problem at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calico.datastore import keys
from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore, Put
from calico.datastore.store import ResourceStore, encode, key_of
from calico.ipam import IPAMClient
from tests.helpers.etcd_server import EtcdCluster
from tests.ipam.util import allocations, resource

REPO = Path(__file__).resolve().parents[2]
WORKERS = [("h1", "p0"), ("h2", "p1"), ("h3", "p2"), ("h3", "p3")]  # two processes share h3's blocks
HOST_OF = {prefix: host for host, prefix in WORKERS}
PER_WORKER = 1000
POOL = "198.18.0.0/20"  # 4,096 addresses in 64 blocks: 4,000 of them get used


async def prepare(kv: KVStore) -> None:
    store = ResourceStore(kv)
    await store.create(resource("IPPool", "pool", {"cidr": POOL}))
    for host in sorted({h for h, _ in WORKERS}):
        await store.create(resource("Node", host, {}))


def start_workers(target: list[str], tmp: Path) -> list[tuple[subprocess.Popen[str], Path]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_at = time.time() + 1.5  # every worker imported and connected before the first assignment
    procs = []
    for host, prefix in WORKERS:
        progress = tmp / f"{prefix}.progress"
        cmd = [sys.executable, "-m", "tests.ipam.alloc_worker", "--host", host, "--count", str(PER_WORKER),
               "--prefix", prefix, "--progress", str(progress), "--start-at", str(start_at), *target]
        procs.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True), progress))
    return procs


def progress(procs: list[tuple[subprocess.Popen[str], Path]]) -> int:
    done = 0
    for _, path in procs:
        with contextlib.suppress(OSError, ValueError):
            done += int(path.read_text() or 0)
    return done


def collect(procs: list[tuple[subprocess.Popen[str], Path]]) -> dict[str, str]:
    results: dict[str, str] = {}
    try:
        for proc, _ in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            doc = json.loads(out)
            assert doc["failures"] == [], doc["failures"][:5]
            results.update(doc["allocated"])
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


async def verify(kv: KVStore, reported: dict[str, str]) -> None:
    assert len(reported) == len(WORKERS) * PER_WORKER
    assert len(set(reported.values())) == len(reported), "an address was handed out twice"
    stored = await allocations(kv)  # also: each address once in the blocks, handle records agree
    assert stored == {addr: handle for handle, addr in reported.items()}, "the datastore holds something else"
    # Give each address its owner, as the CNI plugin would, then nothing may be reported.
    weps = [resource("WorkloadEndpoint", f"wep-{handle}", {
        "node": HOST_OF[handle.split("-")[0]], "interfaceName": f"cali{i:011d}",
        "ipNetworks": [f"{addr}/32"]}, namespace="default") for i, (handle, addr) in enumerate(reported.items())]
    for start in range(0, len(weps), 100):
        await kv.txn([], [Put(key_of(w).path(), encode(w)) for w in weps[start:start + 100]])
    report = await IPAMClient(kv).check()
    assert report.problems == 0, {k: v for k, v in report.to_json("test").items() if v and k != "allocations"}
    blocks, _ = await kv.list(keys.block_prefix())
    assert len(blocks) == 64


@pytest.mark.heavy
async def test_four_processes_on_one_embedded_store(tmp_path: Path) -> None:
    path = str(tmp_path / "kv.db")
    kv = await EmbeddedKV.open(path)
    try:
        await prepare(kv)
        reported = await asyncio.to_thread(collect, start_workers(["--embedded", path], tmp_path))
        await verify(kv, reported)
    finally:
        await kv.close()


@pytest.mark.heavy
async def test_four_processes_on_etcd_with_a_member_killed_midway(tmp_path: Path) -> None:
    with EtcdCluster(tmp_path / "etcd") as cluster:
        kv = await EtcdKV.connect(cluster.endpoints[1:])
        try:
            await prepare(kv)
            procs = start_workers(["--etcd", ",".join(cluster.endpoints)], tmp_path)
            deadline = time.monotonic() + 60
            while progress(procs) < len(WORKERS) * PER_WORKER // 2:
                assert time.monotonic() < deadline, "the workers made no progress"
                assert all(p.poll() is None for p, _ in procs), "a worker ended early"
                await asyncio.sleep(0.02)
            cluster.members[0].kill()  # every client's first endpoint: all of them must fail over
            killed_at = progress(procs)
            reported = await asyncio.to_thread(collect, procs)
            assert killed_at < len(WORKERS) * PER_WORKER
            await verify(kv, reported)
        finally:
            await kv.close()

"""IPAM allocation throughput: automatic assignments (one IPv4 address, a new handle each, as a CNI ADD makes
them) per second, by one allocator and by four concurrent allocator processes (hosts h1..h4), on the embedded
store and on etcd.

    .venv/bin/python bench/bench_ipam.py [--json] [--backend embedded|etcd] [--count 2000] [--per-process 1000]

Single: one `IPAMClient` in this process, `--count` sequential `auto_assign` calls.
Concurrent: four `tests/ipam/alloc_worker.py` processes, started together, `--per-process` calls each; the
aggregate rate is all their assignments over the slowest one's time. Every address is checked to be handed out
once. Also reported: CPU time per assignment of the allocating process(es) and of etcd (from /proc), and the
load average: on this shared 2-core machine the aggregate rate is bounded by CPU (2 cores / CPU per assignment),
so the CPU figures say what the code costs when the wall-clock rate is moved by other work.
Goals (issue 7): >= 500/s single, >= 1,000/s aggregate. etcd is a private single member on 127.0.0.1
(tests/helpers/etcd_server.py, killed at the end); the pool is 198.18.0.0/16 (blocks of /26).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.ipam import AutoAssignArgs, IPAMClient
from tests.helpers.etcd_server import EtcdServer
from tests.ipam.util import resource

REPO = Path(__file__).resolve().parent.parent
POOL = "198.18.0.0/16"


async def prepare(kv: KVStore) -> None:
    await ResourceStore(kv).apply(resource("IPPool", "bench", {"cidr": POOL}))


def cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when there is none."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def single(kv: KVStore, count: int, server_pid: int | None, res: dict[str, float]) -> None:
    ipam = IPAMClient(kv)
    await ipam.auto_assign(AutoAssignArgs(num4=1, handle_id="warm-up", hostname="h0"))
    seen = set()
    c0, s0 = time.process_time(), cpu_of(server_pid)
    t0 = time.perf_counter()
    for i in range(count):
        got = await ipam.auto_assign(AutoAssignArgs(num4=1, handle_id=f"single-{i}", hostname="h0",
                                                    attrs={"namespace": "default", "pod": f"single-{i}"}))
        seen.add(got.ipv4[0])
    res["single_per_s"] = count / (time.perf_counter() - t0)
    res["single_client_cpu_ms"] = (time.process_time() - c0) / count * 1000
    res["single_etcd_cpu_ms"] = (cpu_of(server_pid) - s0) / count * 1000
    assert len(seen) == count


def concurrent(target: list[str], per_process: int, server_pid: int | None, res: dict[str, float]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start_at = time.time() + 2.0
    procs = [subprocess.Popen(
        [sys.executable, "-m", "tests.ipam.alloc_worker", "--host", f"h{i + 1}", "--count", str(per_process),
         "--prefix", f"c{i}", "--start-at", str(start_at), *target],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    s0 = cpu_of(server_pid)
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"worker failed: {err}")
        docs.append(json.loads(out))
    addrs = [a for d in docs for a in d["allocated"].values()]
    failures = [f for d in docs for f in d["failures"]]
    if failures or len(addrs) != 4 * per_process or len(set(addrs)) != len(addrs):
        raise RuntimeError(f"bad run: {len(addrs)} addresses, {len(set(addrs))} distinct, failures {failures[:3]}")
    res["aggregate_4_per_s"] = len(addrs) / max(d["seconds"] for d in docs)
    res["per_process_min"] = min(per_process / d["seconds"] for d in docs)
    res["per_process_max"] = max(per_process / d["seconds"] for d in docs)
    res["aggregate_client_cpu_ms"] = sum(d["cpu_seconds"] for d in docs) / len(addrs) * 1000
    res["aggregate_etcd_cpu_ms"] = (cpu_of(server_pid) - s0) / len(addrs) * 1000


async def run_backend(name: str, tmp: Path, count: int, per_process: int) -> dict[str, float]:
    res: dict[str, float] = {"load_average_1m": os.getloadavg()[0]}
    if name == "embedded":
        async with await EmbeddedKV.open(str(tmp / "single.db")) as kv:
            await prepare(kv)
            await single(kv, count, None, res)
        path = str(tmp / "concurrent.db")
        async with await EmbeddedKV.open(path) as kv:
            await prepare(kv)
        await asyncio.to_thread(concurrent, ["--embedded", path], per_process, None, res)
        return res
    with EtcdServer(tmp / "etcd-single") as server:
        async with await EtcdKV.connect([server.endpoint]) as kv:
            await prepare(kv)
            await single(kv, count, server.pid, res)
    with EtcdServer(tmp / "etcd-concurrent") as server:
        async with await EtcdKV.connect([server.endpoint]) as kv:
            await prepare(kv)
        await asyncio.to_thread(concurrent, ["--etcd", server.endpoint], per_process, server.pid, res)
    return res


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--backend", choices=["embedded", "etcd"], action="append")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--per-process", type=int, default=1000)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="calico-bench-ipam-") as tmp:
        for name in args.backend or ["embedded", "etcd"]:
            results[name] = await run_backend(name, Path(tmp), args.count, args.per_process)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
        return
    print(f"{'backend':<10}{'single /s':>11}{'cpu ms/alloc':>15}{'4 procs /s':>12}{'per proc /s':>13}"
          f"{'cpu ms/alloc':>15}{'load 1m':>9}")
    for name, r in results.items():
        cpu1 = f"{r['single_client_cpu_ms']:.2f}+{r['single_etcd_cpu_ms']:.2f}" if name == "etcd" else \
            f"{r['single_client_cpu_ms']:.2f}"
        cpu4 = f"{r['aggregate_client_cpu_ms']:.2f}+{r['aggregate_etcd_cpu_ms']:.2f}" if name == "etcd" else \
            f"{r['aggregate_client_cpu_ms']:.2f}"
        each = f"{r['per_process_min']:.0f}-{r['per_process_max']:.0f}"
        print(f"{name:<10}{r['single_per_s']:>11.0f}{cpu1:>15}{r['aggregate_4_per_s']:>12.0f}{each:>13}{cpu4:>15}"
              f"{r['load_average_1m']:>9.2f}")
    print("goals: single >= 500/s, aggregate >= 1,000/s; cpu: allocating process(es) [+ etcd], per assignment")


if __name__ == "__main__":
    asyncio.run(main())

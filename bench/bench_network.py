"""Many hosts, measured on a real `calico-lab` (calico-node per host: felix, the BGP renderer, BIRD).

    latency     a new workload on h1 (its address from h1's existing block) -> reachable from a workload on h3:
                time from the WorkloadEndpoint write to the first TCP connect that succeeds (a prober in h3's
                workload retries every 2 ms), p50/p99 over --samples workloads
    block       a newly claimed block on h1 -> a route to it in the kernels of every other host (BIRD's):
                time from IPAM's claim (the affinity confirmed) to the route on the last host
    scale       `calico-lab up --hosts N --route-reflectors K`: how long `up` takes, then (a workload per host
                added) how long until every BGP session is up, every host routes to every block, and every
                workload reaches every other; RSS of felix, BIRD, the renderer and calico-node per host
    throughput  single-stream iperf3 between workloads on two hosts, natively routed and through VXLAN, each as a
                ratio to the two host namespaces talking directly over the same fabric; and natively routed with no
                firewall at all (Felix stopped, tables flushed): the floor the veth hops and forwarding set

Run under the shared lock (labs are namespaces; `make bench` does):

    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_network.py latency [--samples 100] [--datastore etcd]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_network.py block [--samples 20]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_network.py scale [--hosts 32 --route-reflectors 2]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_network.py throughput [--seconds 5 --runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from calico.datastore.config import open_kv
from calico.datastore.store import ResourceStore
from calico.ipam import AutoAssignArgs, IPAMClient
from calico.lab import build, status
from calico.lab.reach import Pair, reach
from calico.lab.state import LabState, load
from calico.resources import parse_resource
from calico.workloads.endpoint import WorkloadSpec, endpoint_resource
from calico.workloads.wiring import unwire_workload, wire_workload
from probes import LISTENER, PROBER, iperf, kill, spawn_in

BIN = Path(sys.executable).parent
PORT = 8080
OPEN_PROFILE = {"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "kns.default"},
                "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}

class Lab:
    """A lab brought up with the real CLI, always brought down."""

    def __init__(self, *up_args: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bn", dir="/tmp"))
        self.name = f"b{secrets.token_hex(2)}"
        self.env = {**os.environ, "CALICO_LAB_DIR": str(self.root)}
        self.up_args = up_args
        self.up_seconds = 0.0

    def cli(self, *args: str, timeout: float = 600) -> str:
        res = subprocess.run([str(BIN / "calico-lab"), *args, "--name", self.name], env=self.env,
                             capture_output=True, text=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"calico-lab {' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")
        return res.stdout

    @property
    def state(self) -> LabState:
        return load(self.root / self.name)

    def __enter__(self) -> Lab:
        t0 = time.monotonic()
        try:
            self.cli("up", *self.up_args)
        except BaseException:
            self.__exit__()
            raise
        self.up_seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.cli("down")
        subprocess.run(["rm", "-rf", str(self.root)], check=False)


@contextlib.contextmanager
def running(*procs: subprocess.Popen[str]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            kill(p)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _store(state: LabState) -> Any:
    return await open_kv(build.store_config(state))


# --- 1. a new workload reachable from another host ------------------------------------------------------------


async def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    with Lab("--hosts", "3", "--datastore", args.datastore) as lab:
        lab.cli("workload", "add", "client", "--host", "h3", "--labels", "role=client", "--profile", "kns.default")
        lab.cli("workload", "add", "first", "--host", "h1", "--profile", "kns.default")  # h1's block exists
        lab.cli("wait", "--timeout", "60")
        st = lab.state
        kv = await _store(st)
        try:
            await ResourceStore(kv).apply(parse_resource(OPEN_PROFILE))
            ipam, store = IPAMClient(kv), ResourceStore(kv)
            client_ns = st.workloads["client"].netns
            h1 = st.hosts["h1"]
            lat, writes = [], []
            for i in range(args.samples):
                wl = WorkloadSpec(name=f"n{i}", node="h1", profiles=("kns.default",))
                got = await ipam.auto_assign(AutoAssignArgs(num4=1, handle_id=wl.handle_id, hostname="h1"))
                ip = str(got.ipv4[0])
                ns = f"{st.prefix}w-n{i}"
                wire_workload(h1.netns, ns, wl.iface, ip, None)
                listener = spawn_in(ns, LISTENER, ip, str(PORT), "30")
                prober = spawn_in(client_ns, PROBER, ip, str(PORT), "10")
                with running(prober, listener):
                    await asyncio.sleep(0.05)  # an idle gap, as between real pod starts
                    res = parse_resource(endpoint_resource(wl, [f"{ip}/32"]))
                    assert prober.stdin is not None and prober.stdout is not None
                    prober.stdin.write("go\n")
                    prober.stdin.flush()
                    t0 = time.monotonic()
                    await store.create(res)
                    writes.append(time.monotonic() - t0)
                    out = (await asyncio.to_thread(prober.stdout.readline)).split()
                if not out or out[0] != "ok":
                    raise RuntimeError(f"n{i} ({ip}) never reachable from h3: {out}")
                lat.append(float(out[1]) - t0)
                await store.delete("WorkloadEndpoint", wl.endpoint_name, "default")
                unwire_workload(ns)
                await ipam.release_by_handle(wl.handle_id)
        finally:
            await kv.close()
    return {"mode": "latency", "datastore": args.datastore, "samples": len(lat),
            "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3, "max_ms": max(lat) * 1e3,
            "write_p50_ms": pct(writes, 50) * 1e3}


# --- 2. a newly claimed block, routed everywhere -----------------------------------------------------------------


def has_route(ns: str, cidr: str) -> bool:
    res = subprocess.run(["ip", "-n", ns, "-j", "route", "show", "exact", cidr], capture_output=True, text=True,
                         check=False)
    return bool(json.loads(res.stdout or "[]"))


async def bench_block(args: argparse.Namespace) -> dict[str, Any]:
    with Lab("--hosts", "3") as lab:
        lab.cli("wait", "--timeout", "60")
        st = lab.state
        kv = await _store(st)
        try:
            # Blocks of one address: every assignment claims a new block for h1.
            pool = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "bench-blocks"},
                    "spec": {"cidr": "198.19.240.0/24", "blockSize": 32}}
            await ResourceStore(kv).apply(parse_resource(pool))
            ipam = IPAMClient(kv)
            others = [h.netns for h in st.hosts.values() if h.name != "h1"]
            took = []
            for i in range(args.samples):
                got = await ipam.auto_assign(AutoAssignArgs(num4=1, handle_id=f"bench-block-{i}", hostname="h1",
                                                            ipv4_pools=["bench-blocks"]))
                t0 = time.monotonic()
                cidr = f"{got.ipv4[0]}/32"
                pending = set(others)
                while pending and time.monotonic() - t0 < 10:
                    pending = {ns for ns in pending if not has_route(ns, cidr)}
                    if pending:
                        await asyncio.sleep(0.005)
                if pending:
                    raise RuntimeError(f"block {cidr} not routed on {sorted(pending)} within 10 s")
                took.append(time.monotonic() - t0)
                await asyncio.sleep(0.2)
        finally:
            await kv.close()
    return {"mode": "block", "samples": len(took), "p50_ms": pct(took, 50) * 1e3, "p99_ms": pct(took, 99) * 1e3,
            "max_ms": max(took) * 1e3}


# --- 3. scale ---------------------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def bench_scale(args: argparse.Namespace) -> dict[str, Any]:
    with Lab("--hosts", str(args.hosts), "--route-reflectors", str(args.route_reflectors)) as lab:
        t_up = time.monotonic()
        st = lab.state
        kv = await _store(st)
        try:
            await ResourceStore(kv).apply(parse_resource(OPEN_PROFILE))
        finally:
            await kv.close()
        # One `calico-lab workload add` for a workload on every host (attached concurrently in one process).
        lab.cli("workload", "add", *(f"w-{h}@{h}" for h in st.hosts), "--profile", "kns.default")
        t_added = time.monotonic() - t_up
        st = lab.state
        wls = list(st.workloads.values())
        pairs = [Pair(w.netns, o.netns, o.ipv4) for w in wls for o in wls if o.name != w.name]

        async def converged_at() -> float | None:
            while time.monotonic() - t_up < args.timeout:
                if not status.problems(await asyncio.to_thread(status.collect, st)):
                    return time.monotonic() - t_up
                await asyncio.sleep(0.5)
            return None

        async def reached() -> tuple[dict[Pair, bool], float]:
            got = await reach(pairs, PORT, max(5.0, args.timeout - (time.monotonic() - t_up)))
            return got, time.monotonic() - t_up

        # Every pair retries until it connects (or the deadline): one process, every socket made in its namespace.
        converged, (results, reachable) = await asyncio.gather(converged_at(), reached())
        times = sorted(t for t in results.values() if t is not None)
        ok = len(times)
        rss: dict[str, list[float]] = {"felix": [], "bird": [], "confd": [], "calico-node": []}
        for h in st.hosts.values():
            for child in ("felix", "bird", "confd"):
                rss[child].append(rss_mib(h.child_pid(child)))
            rss["calico-node"].append(rss_mib(h.node_pid))
    return {"mode": "scale", "hosts": args.hosts, "route_reflectors": args.route_reflectors,
            "up_s": lab.up_seconds, "workloads_added_s": t_added, "converged_s": converged,
            "all_reachable_s": reachable, "pairs": len(pairs), "pairs_ok": ok,
            "pair_s": {"p50": pct(times, 50), "p90": pct(times, 90), "max": times[-1]} if times else None,
            "rss_mib": {k: {"median": statistics.median(v), "max": max(v)} for k, v in rss.items() if v}}


# --- 4. throughput ------------------------------------------------------------------------------------------------


CONNTRACK_ONLY = """
table inet ctonly {
  chain ct_forward { type filter hook forward priority 0; ct state established,related accept; }
  chain ct_input { type filter hook input priority 0; ct state established,related accept; }
  chain ct_output { type filter hook output priority 0; ct state established,related accept; }
}
"""


async def _vxlan_route(ns: str, dst: str, wanted: bool, timeout: float = 30) -> bool:
    """Wait until the route from `ns` to `dst` goes through vxlan.calico (or, not `wanted`, no longer does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(["ip", "-n", ns, "route", "get", dst], capture_output=True, text=True, check=False)
        if ("vxlan.calico" in r.stdout) == wanted and r.returncode == 0:
            return True
        await asyncio.sleep(0.2)
    return False


async def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    with Lab("--hosts", "2") as lab:
        lab.cli("workload", "add", "w1@h1", "w2@h2", "--profile", "kns.default")
        st = lab.state
        kv = await _store(st)
        try:
            await ResourceStore(kv).apply(parse_resource(OPEN_PROFILE))
        finally:
            await kv.close()
        lab.cli("wait", "--timeout", "60")
        h1, h2 = st.hosts["h1"], st.hosts["h2"]
        w1, w2 = st.workloads["w1"], st.workloads["w2"]
        h2_ip = h2.addr4.split("/")[0]

        def runs() -> tuple[float, float]:
            """Medians (Gbit/s) of host -> host and w1 -> w2, interleaved run by run."""
            hosts, wls = [], []
            for _ in range(args.runs):
                hosts.append(iperf(h2.netns, h2_ip, h1.netns, args.seconds))
                wls.append(iperf(w2.netns, w2.ipv4, w1.netns, args.seconds))
            return statistics.median(hosts) / 1e9, statistics.median(wls) / 1e9

        out: dict[str, Any] = {"mode": "throughput", "seconds": args.seconds, "runs": args.runs}
        out["hosts_gbps"], out["native_gbps"] = runs()
        out["native_ratio"] = out["native_gbps"] / out["hosts_gbps"]
        # The same two workloads through VXLAN: the pool switched live, Felix moves the routes to vxlan.calico.
        env = {**os.environ, **dict(line.removeprefix("export ").split("=", 1)
                                    for line in lab.cli("env").splitlines())}

        def vxlan_mode(mode: str) -> None:
            subprocess.run([str(BIN / "calicoctl"), "patch", "ippool", "default-ipv4-ippool", "-p",
                            json.dumps({"spec": {"vxlanMode": mode}})], env=env, check=True, capture_output=True)

        vxlan_mode("Always")
        if await _vxlan_route(h1.netns, w2.ipv4, True):
            hosts_vx, vx = runs()
            out["vxlan_gbps"], out["vxlan_ratio"] = vx, vx / hosts_vx
        else:
            out["vxlan_error"] = "no route through vxlan.calico within 30 s"
        # The floor: natively routed again, then no firewall at all (Felix stopped on both hosts, the ruleset
        # flushed; routes and veths stay). What Calico's rules cost is native / bare.
        vxlan_mode("Never")
        if await _vxlan_route(h1.netns, w2.ipv4, False):
            for h in (h1, h2):
                lab.cli("felix", "stop", "--host", h.name)
                subprocess.run(["ip", "netns", "exec", h.netns, "nft", "flush", "ruleset"], check=True)
            hosts_bare, bare = runs()
            out["bare_gbps"], out["bare_ratio"] = bare, bare / hosts_bare
            out["native_vs_bare"] = out["native_ratio"] / out["bare_ratio"]
            # Connection tracking alone (what any stateful policy needs): one table, `ct state` on every hook.
            for h in (h1, h2):
                subprocess.run(["ip", "netns", "exec", h.netns, "nft", "-f", "-"], input=CONNTRACK_ONLY, text=True,
                               check=True)
            hosts_ct, ct = runs()
            out["ct_gbps"], out["ct_ratio"] = ct, ct / hosts_ct
            out["native_vs_ct"] = out["native_ratio"] / out["ct_ratio"]
    return out


# --- output ---------------------------------------------------------------------------------------------------------


def show(r: dict[str, Any]) -> None:
    mode = r["mode"]
    rows: list[tuple[str, str]] = []
    if mode == "latency":
        rows = [("new workload on h1 -> reachable from h3, p50", f"{r['p50_ms']:.1f} ms"),
                ("p99 / max", f"{r['p99_ms']:.1f} / {r['max_ms']:.1f} ms"),
                ("samples, datastore", f"{r['samples']}, {r['datastore']}"),
                ("WorkloadEndpoint write itself, p50", f"{r['write_p50_ms']:.1f} ms")]
    elif mode == "block":
        rows = [("new block on h1 -> routed on every other host, p50", f"{r['p50_ms']:.0f} ms"),
                ("p99 / max", f"{r['p99_ms']:.0f} / {r['max_ms']:.0f} ms"), ("samples", str(r["samples"]))]
    elif mode == "scale":
        rows = [("hosts / route reflectors", f"{r['hosts']} / {r['route_reflectors']}"),
                ("`calico-lab up`", f"{r['up_s']:.1f} s"),
                ("after up: a workload per host added", f"{r['workloads_added_s']:.1f} s"),
                ("after up: sessions up, every block routed everywhere",
                 f"{r['converged_s']:.1f} s" if r["converged_s"] is not None else "not within the timeout"),
                ("after up: every workload reached every other", f"{r['all_reachable_s']:.1f} s"),
                ("a pair's first connect after the probes started, p50 / p90 / max",
                 " / ".join(f"{r['pair_s'][k]:.1f}" for k in ("p50", "p90", "max")) + " s" if r["pair_s"] else "-"),
                ("pairs reached", f"{r['pairs_ok']} / {r['pairs']}")]
        rows += [(f"RSS {k} per host, median / max", f"{v['median']:.1f} / {v['max']:.1f} MiB")
                 for k, v in r["rss_mib"].items()]
    elif mode == "throughput":
        rows = [("host to host (fabric)", f"{r['hosts_gbps']:.2f} Gbit/s"),
                ("workload to workload, native", f"{r['native_gbps']:.2f} Gbit/s = {r['native_ratio']:.3f}x")]
        if "vxlan_gbps" in r:
            rows.append(("workload to workload, VXLAN", f"{r['vxlan_gbps']:.2f} Gbit/s = {r['vxlan_ratio']:.3f}x"))
        else:
            rows.append(("workload to workload, VXLAN", r.get("vxlan_error", "-")))
        if "bare_gbps" in r:
            rows += [("native, no firewall (the floor)", f"{r['bare_gbps']:.2f} Gbit/s = {r['bare_ratio']:.3f}x"),
                     ("native / floor", f"{r['native_vs_bare']:.3f}")]
        if "ct_gbps" in r:
            rows += [("native, conntrack only", f"{r['ct_gbps']:.2f} Gbit/s = {r['ct_ratio']:.3f}x"),
                     ("native / conntrack only: Calico's rules", f"{r['native_vs_ct']:.3f}")]
    width = max(len(k) for k, _ in rows)
    print(f"\n{mode}")
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["latency", "block", "scale", "throughput"])
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--datastore", choices=["embedded", "etcd"], default="embedded")
    ap.add_argument("--hosts", type=int, default=32)
    ap.add_argument("--route-reflectors", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.samples is None:
        args.samples = 100 if args.mode == "latency" else 20
    fn = {"latency": bench_latency, "block": bench_block, "scale": bench_scale, "throughput": bench_throughput}
    result = asyncio.run(fn[args.mode](args))
    print(json.dumps(result)) if args.json else show(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Flow logs' cost (issue 9 section 6): single-stream TCP throughput with and without them, and a flood of denied
packets at one workload: Felix's CPU and its write-to-traffic latency while the flood lasts.

The state is bench_felix's (`Bench`: a host namespace, 100 local workloads plus a client, 200 policies, a real
calico-felix on the embedded store; `--remote` remote endpoints, default 0 here). Flow logs are on when Felix runs
with FlowLogsFileEnabled (file in the run's temporary directory, FlowLogsFlushInterval 5 s, the kernel's default
rate limit of 1,000 logged packets a second).

    throughput  iperf3 -t 5 between the client and w1, Felix restarted with flow logs off / on, alternated,
                medians; overhead = 1 - on / off (goal <= 2 %)
    flood       the client floods w2 with UDP its policies deny, paced at --pps (default 100,000 packets a second),
                for as long as the latency samples take; Felix's CPU (utime + stime over wall time) idle and during
                the flood; write-to-traffic latency (a new workload endpoint -> first TCP connect from the client,
                bench_felix's prober) without and with the flood (goal p50 <= 10 ms, p99 <= 50 ms)

    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_flowlogs.py throughput [--runs 3]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_flowlogs.py flood [--pps 100000] [--samples 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_felix import PROBE_PORT, Bench, local_ip, local_ip6, pct, wep_doc
from calico.resources import parse_resource
from probes import LISTENER, PROBER, iperf, kill, spawn_in

# Paced UDP at one destination port from a fresh source port every 1,000 packets (so conntrack-free, every packet
# meets policy); prints "ready", then floods until stdin closes or `seconds` pass; prints the packets sent.
FLOODER = r"""
import socket, sys, threading, time
dst, port, pps, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
print("ready", flush=True)
sent, start, payload = 0, time.monotonic(), b"f" * 64
while not stop.is_set() and time.monotonic() - start < seconds:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    send = s.send
    for _ in range(1000):
        try:
            send(payload)
        except OSError:  # an ICMP error reported on the connected socket: keep going
            pass
    s.close()
    sent += 1000
    ahead = sent / pps - (time.monotonic() - start)
    if ahead > 0:
        time.sleep(ahead)
print(sent, time.monotonic() - start, flush=True)
"""


@dataclass
class FlowBench(Bench):
    flow_logs: bool = False

    def felix_env(self) -> dict[str, str]:
        env = super().felix_env()
        if self.flow_logs:
            env.update({"FELIX_FLOWLOGSFILEENABLED": "true", "FELIX_FLOWLOGSFILEDIRECTORY": str(self.tmp / "flows"),
                        "FELIX_FLOWLOGSFLUSHINTERVAL": "5"})
        return env

    def restart(self, flow_logs: bool) -> None:
        self.stop_felix()
        self.flow_logs = flow_logs
        self.wait_ready()

    def cpu_seconds(self) -> float:
        assert self.felix is not None
        fields = Path(f"/proc/{self.felix.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def felix_pid(self) -> int:
        """calico-felix itself: the spawned `ip netns exec` execs into it, so the PID is the same."""
        assert self.felix is not None
        return self.felix.pid


async def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    b = FlowBench()
    try:
        await b.build(args.local, args.policies, args.remote)
        assert b.world is not None
        server, client = b.world.workloads["w1"], b.world.workloads["client"]
        off, on = [], []
        for _ in range(args.runs):
            for flag, out in ((False, off), (True, on)):
                b.restart(flag)
                out.append(iperf(server.netns, server.ipv4, client.netns, args.seconds))
        records = sum(1 for _ in (b.tmp / "flows").glob("flows.log*"))
        return {"runs": args.runs, "seconds": args.seconds, "off_gbps": statistics.median(off) / 1e9,
                "on_gbps": statistics.median(on) / 1e9, "overhead": 1 - statistics.median(on) / statistics.median(off),
                "off_all": [round(x / 1e9, 2) for x in off], "on_all": [round(x / 1e9, 2) for x in on],
                "flow_log_files": records}
    finally:
        await b.close()


async def latency_samples(b: FlowBench, names: list[tuple[str, int]], ifaces: dict[str, str]) -> list[float]:
    assert b.world is not None
    client_ns = b.world.workloads["client"].netns
    out = []
    for name, i in names:
        ip = local_ip(i)
        listener = spawn_in(b.world.workloads[name].netns, LISTENER, ip, str(PROBE_PORT), "30")
        prober = spawn_in(client_ns, PROBER, ip, str(PROBE_PORT), "10")
        try:
            await asyncio.sleep(random.uniform(0.02, 0.1))
            res = parse_resource(wep_doc(name, ifaces[name], ip, local_ip6(i), {"role": "server", "app": "x"}))
            assert prober.stdin is not None and prober.stdout is not None
            prober.stdin.write("go\n")
            prober.stdin.flush()
            t0 = time.monotonic()
            await b.store.create(res)
            line = (await asyncio.to_thread(prober.stdout.readline)).split()
            if not line or line[0] != "ok":
                raise RuntimeError(f"{name}: traffic never allowed; see {b.tmp / 'felix.log'}")
            out.append(float(line[1]) - t0)
        finally:
            kill(prober)
            kill(listener)
    return out


async def bench_flood(args: argparse.Namespace) -> dict[str, Any]:
    b = FlowBench()
    try:
        await b.build(args.local, args.policies, args.remote)
        assert b.world is not None
        idle_names = [(f"i{k}", args.local + 1 + k) for k in range(args.samples)]
        flood_names = [(f"f{k}", args.local + 1 + args.samples + k) for k in range(args.samples)]
        ifaces = {n: b.wire(n, i) for n, i in idle_names + flood_names}
        b.flow_logs = True
        b.wait_ready()
        await asyncio.sleep(2)
        c0, t0 = b.cpu_seconds(), time.monotonic()
        await asyncio.sleep(5)
        idle_cpu = (b.cpu_seconds() - c0) / (time.monotonic() - t0)
        idle = await latency_samples(b, idle_names, ifaces)
        target = b.world.workloads["w2"]
        flooder = spawn_in(b.world.workloads["client"].netns, FLOODER, target.ipv4, "9999", str(args.pps), "600")
        try:
            await asyncio.sleep(1)
            c0, t0 = b.cpu_seconds(), time.monotonic()
            flooded = await latency_samples(b, flood_names, ifaces)
            flood_cpu = (b.cpu_seconds() - c0) / (time.monotonic() - t0)
            assert flooder.poll() is None, "the flood ended early"
            assert flooder.stdin is not None and flooder.stdout is not None
            flooder.stdin.write("stop\n")
            flooder.stdin.flush()
            sent, secs = flooder.stdout.readline().split()
        finally:
            kill(flooder)
        health = subprocess.run(["ip", "netns", "exec", b.host, sys.executable, "-c",
                                 "import urllib.request; print(urllib.request.urlopen("
                                 "'http://127.0.0.1:9099/readiness').status)"], capture_output=True, text=True)
        await asyncio.sleep(6)  # one flush: the flood's record
        logged = 0
        for path in (b.tmp / "flows").glob("flows.log*"):
            for line in path.read_text().splitlines():
                doc = json.loads(line)
                if doc["dest_port"] == 9999:
                    logged += doc["packets"]
        return {
            "pps_target": args.pps, "pps_sent": int(sent) / float(secs), "packets_sent": int(sent),
            "packets_logged": logged, "idle_cpu": idle_cpu, "flood_cpu": flood_cpu,
            "idle_p50_ms": pct(idle, 50) * 1000, "idle_p99_ms": pct(idle, 99) * 1000,
            "flood_p50_ms": pct(flooded, 50) * 1000, "flood_p99_ms": pct(flooded, 99) * 1000,
            "samples": len(flooded), "ready_after": health.stdout.strip(),
        }
    finally:
        await b.close()


def show(mode: str, r: dict[str, Any]) -> None:
    if mode == "throughput":
        print(f"iperf3 single stream -t {r['seconds']}, median of {r['runs']} (alternated), Felix restarted each time")
        print(f"flow logs off {r['off_gbps']:.2f} Gb/s, on {r['on_gbps']:.2f} Gb/s: overhead "
              f"{r['overhead'] * 100:.1f} % (goal <= 2 %)")
        print(f"runs off {r['off_all']}  on {r['on_all']}")
    else:
        print(f"denied flood at one workload: target {r['pps_target']} pps, sent {r['pps_sent']:.0f} pps "
              f"({r['packets_sent']} packets), logged {r['packets_logged']} (kernel rate limit 1,000/s)")
        print(f"felix CPU: idle {r['idle_cpu'] * 100:.1f} %, during the flood {r['flood_cpu'] * 100:.1f} % of a core")
        print(f"write-to-traffic latency, {r['samples']} samples: idle p50 {r['idle_p50_ms']:.1f} / p99 "
              f"{r['idle_p99_ms']:.1f} ms; during the flood p50 {r['flood_p50_ms']:.1f} / p99 {r['flood_p99_ms']:.1f}"
              f" ms (goal p50 <= 10, p99 <= 50); readiness after: {r['ready_after']}")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["throughput", "flood"])
    ap.add_argument("--local", type=int, default=100)
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--remote", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--pps", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = await (bench_throughput(args) if args.mode == "throughput" else bench_flood(args))
    print(json.dumps(r, indent=2)) if args.json else show(args.mode, r)


if __name__ == "__main__":
    asyncio.run(main())

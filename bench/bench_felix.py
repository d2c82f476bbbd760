"""Felix end to end: write-to-traffic latency, cold start vs the kernel's own load, RSS, and throughput.

Every measurement runs the real `calico-felix` process inside a host network namespace (a `tests.helpers.netns.World`,
unique run id, deleted afterwards, also on failure) against a real datastore (embedded SQLite by default, or etcd
run inside the host namespace and reached through calico-lab's loopback gateway). The state is written through the
real path: `ResourceStore` for policies and local endpoints, one raw transaction per 100 remote endpoints.

State (defaults): 100 local workload endpoints (`role=server`, wired veths) plus one client workload
(`role=client`); 200 GlobalNetworkPolicies: 198 that select every server and allow one tcp port from an
`app == ...` selector (50 distinct selectors, so 50 IP sets), `allow-clients` (servers accept tcp from
`role == "client"`, the 10k-member IP set) and `allow-egress`; plus `--remote` endpoints on other nodes
(`role=client`, so they fill the allow-clients IP set).

    latency     a NEW, already wired workload: time from `ResourceStore.create(WorkloadEndpoint)` to the first
                successful TCP connect from the client (a prober in the client namespace retries every <= 2 ms)
    coldstart   felix start to readiness 200 with the table present, vs `nft -f` (or ipset restore +
                iptables-restore) of the identical final ruleset into a fresh namespace; felix RSS with 0 and
                with --remote remote endpoints
    throughput  single-stream iperf3 between two workloads, Calico's ruleset in place vs no Calico table at all,
                alternated, -t 5, medians

Run under the shared lock (another helper also builds namespaces):

    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_felix.py latency [--samples 40] [--datastore etcd]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_felix.py coldstart [--backend iptables] [--flow-logs]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_felix.py throughput
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from calico.datastore.embedded import EmbeddedKV  # noqa: E402
from calico.datastore.etcd import EtcdKV  # noqa: E402
from calico.datastore.keys import RESOURCE_PREFIX  # noqa: E402
from calico.datastore.kv import KVStore, Put  # noqa: E402
from calico.datastore.store import ResourceStore  # noqa: E402
from calico.resources import parse_resource  # noqa: E402
from probes import LISTENER, PROBER, iperf, kill, spawn_in  # noqa: E402
from tests.helpers.netns import World, new_run_id, sh  # noqa: E402

HOSTNAME = "bench-host"
NAMESPACE = "bench"
HEALTH_PORT = 9099
PROBE_PORT = 8080
FELIX = str(Path(sys.executable).parent / "calico-felix")

# Polls felix's readiness from inside the host namespace every 5 ms; prints the monotonic time of the first 200.
_READY_POLLER = r"""
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            if r.status == 200:
                print(f"ok {time.monotonic():.6f}", flush=True); sys.exit(0)
    except Exception:
        pass
    time.sleep(0.005)
print("timeout", flush=True); sys.exit(1)
"""


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


# --- the state --------------------------------------------------------------------------------------------


def local_ip(i: int) -> str:
    return f"198.18.{1 + i // 250}.{i % 250 + 2}"


def local_ip6(i: int) -> str:
    return f"fd00:c411:1::{i + 2:x}"


def remote_ip(i: int) -> str:
    return f"198.19.{i // 250}.{i % 250 + 2}"


def wep_doc(
    name: str, iface: str, ipv4: str, ipv6: str | None, labels: dict[str, str], node: str = HOSTNAME
) -> dict[str, Any]:
    nets = [f"{ipv4}/32"] + ([f"{ipv6}/128"] if ipv6 else [])
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": f"{node}-k8s-{name}-eth0",
            "namespace": NAMESPACE,
            "labels": {**labels, "projectcalico.org/namespace": NAMESPACE, "projectcalico.org/orchestrator": "k8s"},
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": name,
            "endpoint": "eth0",
            "interfaceName": iface,
            "ipNetworks": nets,
        },
    }


def policy_docs(count: int) -> list[dict[str, Any]]:
    def gnp(name: str, order: int, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"order": order, **spec},
        }

    docs = [
        gnp(
            f"p{i:03d}",
            i,
            {
                "selector": 'role == "server"',
                "types": ["Ingress"],
                "ingress": [
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "source": {"selector": f'app == "app{i % 50}"'},
                        "destination": {"ports": [20000 + i]},
                    }
                ],
            },
        )
        for i in range(count - 2)
    ]
    docs.append(
        gnp(
            "allow-clients",
            1000,
            {
                "selector": 'role == "server"',
                "types": ["Ingress"],
                "ingress": [{"action": "Allow", "protocol": "TCP", "source": {"selector": 'role == "client"'}}],
            },
        )
    )
    docs.append(gnp("allow-egress", 1001, {"selector": "all()", "types": ["Egress"], "egress": [{"action": "Allow"}]}))
    return docs


async def put_remote(kv: KVStore, count: int) -> None:
    batch: list[Put] = []
    for i in range(count):
        node = f"remote{i % 50}"
        doc = wep_doc(f"r{i}", f"cali{i:011x}", remote_ip(i), None, {"role": "client", "app": f"app{i % 50}"}, node)
        doc["metadata"]["uid"] = f"00000000-0000-0000-0000-{i:012d}"
        doc["metadata"]["creationTimestamp"] = "2026-11-28T00:00:00Z"
        key = f"{RESOURCE_PREFIX}workloadendpoints/{NAMESPACE}/{doc['metadata']['name']}"
        batch.append(Put(key, json.dumps(doc, separators=(",", ":")).encode()))
        if len(batch) == 100:
            await kv.txn([], batch)
            batch = []
    if batch:
        await kv.txn([], batch)


# --- the world --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """One host namespace with wired workloads, a datastore, and (at most one at a time) a felix process."""

    datastore: str = "embedded"
    backend: str = "nftables"
    run_id: str = field(default_factory=new_run_id)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-felix-")))
    world: World | None = None
    kv: KVStore | None = None
    felix: subprocess.Popen[bytes] | None = None
    extra_ns: list[str] = field(default_factory=list)
    _daemons: list[tuple[int, str]] = field(default_factory=list)
    _etcd_endpoint: str = ""
    log_level: str = "Info"
    flow_logs: bool = False  # Felix's flow logs on (FlowLogsFileEnabled): every endpoint is parsed to name flows
    keep_log: str = ""

    @property
    def host(self) -> str:
        assert self.world is not None
        return self.world.host

    async def open(self) -> None:
        self.world = World(self.run_id)
        if self.datastore == "embedded":
            self.kv = await EmbeddedKV.open(str(self.tmp / "store.db"))
            return
        from calico.lab import daemons

        addr = self.world.host_ipv4  # on the host namespace's lo: felix reaches etcd without leaving its host
        pid = daemons.start_etcd(self.host, addr, self.tmp / "etcd", self.tmp / "etcd.log")
        self._daemons.append((pid, "etcd"))
        gw_pid, port = daemons.start_gateway(self.host, addr, self.tmp / "gateway.log")
        self._daemons.append((gw_pid, "calico.lab.gateway"))
        daemons.wait_http(f"http://127.0.0.1:{port}/health", 30, "etcd")
        self._etcd_endpoint = f"http://{addr}:{daemons.ETCD_PORT}"
        self.kv = await EtcdKV.connect([f"http://127.0.0.1:{port}"])

    def felix_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "FELIX_FELIXHOSTNAME": HOSTNAME,
            "FELIX_DATAPLANEBACKEND": self.backend,
            "FELIX_HEALTHENABLED": "true",
            "FELIX_HEALTHPORT": str(HEALTH_PORT),
            "FELIX_LOGSEVERITYSCREEN": self.log_level,
        }
        if self.flow_logs:
            env.update({"FELIX_FLOWLOGSFILEENABLED": "true", "FELIX_FLOWLOGSFILEDIRECTORY": str(self.tmp / "flows")})
        if self.datastore == "embedded":
            env.update({"DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": str(self.tmp / "store.db")})
        else:
            env.update({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": self._etcd_endpoint})
        return env

    @property
    def store(self) -> ResourceStore:
        assert self.kv is not None
        return ResourceStore(self.kv)

    async def write(self, docs: list[dict[str, Any]]) -> None:
        store = self.store
        for doc in docs:
            await store.create(parse_resource(doc))

    def wire(self, name: str, i: int) -> str:
        """Wire workload `name` with local address index `i` (host routes are felix's job); its interface."""
        assert self.world is not None
        wl = self.world.add_workload(name, local_ip(i), local_ip6(i), host_routes=False)
        return wl.iface

    async def build(self, local: int, policies: int, remote: int) -> None:
        await self.open()
        await self.store.ensure_default_tier()
        await self.write(policy_docs(policies))
        docs = [wep_doc("client", self.wire("client", 0), local_ip(0), local_ip6(0), {"role": "client"})]
        for i in range(1, local + 1):
            docs.append(
                wep_doc(
                    f"w{i}", self.wire(f"w{i}", i), local_ip(i), local_ip6(i), {"role": "server", "app": f"app{i % 50}"}
                )
            )
        await self.write(docs)
        assert self.kv is not None
        await put_remote(self.kv, remote)

    # --- felix ---------------------------------------------------------------------------------------

    def start_felix(self) -> float:
        """Spawn calico-felix in the host namespace; the monotonic time just before the spawn."""
        assert self.felix is None
        log = open(self.tmp / "felix.log", "ab")  # noqa: SIM115 - closed with the process
        t0 = time.monotonic()
        self.felix = subprocess.Popen(
            ["ip", "netns", "exec", self.host, FELIX],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.felix_env(),
        )
        log.close()
        return t0

    def stop_felix(self) -> None:
        if self.felix is None:
            return
        proc, self.felix = self.felix, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # our own child, by PID
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def felix_rss_kib(self) -> int:
        assert self.felix is not None
        for line in Path(f"/proc/{self.felix.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    @contextlib.contextmanager
    def ready_poller(self, timeout: float = 120) -> Iterator[subprocess.Popen[str]]:
        proc = spawn_in(self.host, _READY_POLLER, f"http://127.0.0.1:{HEALTH_PORT}/readiness", str(timeout))
        try:
            yield proc
        finally:
            kill(proc)

    def wait_ready(self, timeout: float = 120) -> float:
        """Start felix and wait for readiness; (monotonic ready time - spawn time)."""
        with self.ready_poller(timeout) as poller:
            t0 = self.start_felix()
            assert poller.stdout is not None
            line = poller.stdout.readline().split()
            if not line or line[0] != "ok":
                raise RuntimeError(f"felix not ready; see {self.tmp / 'felix.log'}")
            return float(line[1]) - t0

    def add_ns(self, suffix: str) -> str:
        ns = f"cnt-{self.run_id}-{suffix}"
        sh("ip", "netns", "add", ns)
        self.extra_ns.append(ns)
        return ns

    async def close(self) -> None:
        from calico.lab import daemons

        self.stop_felix()
        if self.keep_log and (self.tmp / "felix.log").exists():
            sh("cp", str(self.tmp / "felix.log"), self.keep_log, check=False)
        if self.kv is not None:
            with contextlib.suppress(Exception):
                await self.kv.close()
        for pid, marker in reversed(self._daemons):
            daemons.stop(pid, marker)
        for ns in self.extra_ns:
            sh("ip", "netns", "del", ns, check=False)
        if self.world is not None:
            self.world.close()
        sh("rm", "-rf", str(self.tmp), check=False)


def felix_log_seconds(path: Path) -> float | None:
    """The `seconds` of felix's "first dataplane apply done" log line (the apply alone), when logged."""
    for line in path.read_text(errors="replace").splitlines():
        if "first dataplane apply done" in line:
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                return float(doc.get("seconds"))
            for tok in line.replace(",", " ").split():
                if tok.startswith("seconds="):
                    return float(tok.split("=", 1)[1])
    return None


# --- 1. write-to-traffic latency --------------------------------------------------------------------------


async def bench_latency(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench(datastore=args.datastore, backend=args.backend, log_level=args.log_level, keep_log=args.keep_log)
    try:
        await b.build(args.local, args.policies, args.remote)
        new = [(f"n{k}", args.local + 1 + k) for k in range(args.samples)]
        ifaces = {name: b.wire(name, i) for name, i in new}
        ready_s = b.wait_ready()
        assert b.world is not None
        client_ns = b.world.workloads["client"].netns
        lat, writes, tries = [], [], []
        for name, i in new:
            ip = local_ip(i)
            listener = spawn_in(b.world.workloads[name].netns, LISTENER, ip, str(PROBE_PORT), "30")
            prober = spawn_in(client_ns, PROBER, ip, str(PROBE_PORT), "10")
            try:
                await asyncio.sleep(random.uniform(0.02, 0.1))  # an idle gap, as between real pod starts
                doc = wep_doc(name, ifaces[name], ip, local_ip6(i), {"role": "server", "app": f"app{i % 50}"})
                res = parse_resource(doc)
                assert prober.stdin is not None and prober.stdout is not None
                prober.stdin.write("go\n")
                prober.stdin.flush()
                t0 = time.monotonic()
                await b.store.create(res)
                writes.append(time.monotonic() - t0)
                out = (await asyncio.to_thread(prober.stdout.readline)).split()
                if not out or out[0] != "ok":
                    raise RuntimeError(f"{name}: traffic never allowed ({out}); see {b.tmp / 'felix.log'}")
                lat.append(float(out[1]) - t0)
                tries.append(int(out[2]))
            finally:
                kill(prober)
                kill(listener)
        return {
            "datastore": args.datastore,
            "backend": args.backend,
            "local": args.local,
            "policies": args.policies,
            "remote": args.remote,
            "samples": len(lat),
            "felix_ready_s": ready_s,
            "p50_ms": pct(lat, 50) * 1000,
            "p90_ms": pct(lat, 90) * 1000,
            "p99_ms": pct(lat, 99) * 1000,
            "min_ms": min(lat) * 1000,
            "max_ms": max(lat) * 1000,
            "write_p50_ms": pct(writes, 50) * 1000,
            "prober_tries_p50": pct([float(t) for t in tries], 50),
            "all_ms": [round(x * 1000, 2) for x in lat],
        }
    finally:
        await b.close()


# --- 2. cold start (and 3. RSS) ---------------------------------------------------------------------------


def clear_host_tables(b: Bench) -> None:
    """Remove Calico's kernel state from the bench's host namespace (never anywhere else)."""
    if b.backend == "nftables":
        sh("ip", "netns", "exec", b.host, "nft", "delete", "table", "inet", "calico", check=False)
        return
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            sh("ip", "netns", "exec", b.host, tool, "-t", table, "-F", check=False)
            sh("ip", "netns", "exec", b.host, tool, "-t", table, "-X", check=False)
    sh("ip", "netns", "exec", b.host, "ipset", "destroy", check=False)


def save_ruleset(b: Bench) -> dict[str, str]:
    """The final ruleset text, read from the host namespace."""

    def out(*argv: str) -> str:
        return sh("ip", "netns", "exec", b.host, *argv).stdout

    if b.backend == "nftables":
        return {"nft": out("nft", "list", "table", "inet", "calico")}
    return {"ipset": out("ipset", "save"), "iptables": out("iptables-save"), "ip6tables": out("ip6tables-save")}


def kernel_load(ns: str, files: dict[str, Path]) -> float:
    """Time to load the saved ruleset into namespace `ns` with the kernel tools (one process per tool)."""
    steps = (
        [["nft", "-f", str(files["nft"])]]
        if "nft" in files
        else [
            ["ipset", "restore", "-f", str(files["ipset"])],
            ["iptables-restore", str(files["iptables"])],
            ["ip6tables-restore", str(files["ip6tables"])],
        ]
    )
    t0 = time.monotonic()
    for argv in steps:
        sh("ip", "netns", "exec", ns, *argv, timeout=60)
    return time.monotonic() - t0


def clear_ns(ns: str, backend: str) -> None:
    if backend == "nftables":
        sh("ip", "netns", "exec", ns, "nft", "flush", "ruleset")
        return
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle", "raw"):
            sh("ip", "netns", "exec", ns, tool, "-t", table, "-F", check=False)
            sh("ip", "netns", "exec", ns, tool, "-t", table, "-X", check=False)
    sh("ip", "netns", "exec", ns, "ipset", "destroy", check=False)


def table_present(b: Bench) -> bool:
    if b.backend == "nftables":
        return sh("ip", "netns", "exec", b.host, "nft", "list", "table", "inet", "calico", check=False).returncode == 0
    return "cali-" in sh("ip", "netns", "exec", b.host, "iptables-save").stdout


async def bench_coldstart(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench(datastore=args.datastore, backend=args.backend, flow_logs=args.flow_logs)
    try:
        await b.build(args.local, args.policies, 0)
        assert b.kv is not None
        # RSS with no remote endpoints.
        clear_host_tables(b)
        ready0 = b.wait_ready()
        await asyncio.sleep(1.0)
        rss0 = b.felix_rss_kib()
        b.stop_felix()
        await put_remote(b.kv, args.remote)
        felix_s, apply_s, rss = [], [], []
        for _ in range(args.runs):
            clear_host_tables(b)
            (b.tmp / "felix.log").unlink(missing_ok=True)
            felix_s.append(b.wait_ready())
            if not table_present(b):
                raise RuntimeError("felix ready but its table is missing")
            await asyncio.sleep(1.0)
            rss.append(b.felix_rss_kib())
            b.stop_felix()
            s = felix_log_seconds(b.tmp / "felix.log")
            if s is not None:
                apply_s.append(s)
        texts = save_ruleset(b)
        files = {}
        for name, text in texts.items():
            files[name] = b.tmp / f"final.{name}"
            files[name].write_text(text)
        fresh = b.add_ns("fresh")
        kernel_s = []
        for _ in range(args.runs):
            clear_ns(fresh, b.backend)
            kernel_s.append(kernel_load(fresh, files))
        lines = sum(t.count("\n") for t in texts.values())
        felix_med, kernel_med = statistics.median(felix_s), statistics.median(kernel_s)
        return {
            "datastore": args.datastore,
            "backend": args.backend,
            "local": args.local,
            "policies": args.policies,
            "remote": args.remote,
            "runs": args.runs,
            "ruleset_lines": lines,
            "flow_logs": args.flow_logs,
            "felix_to_ready_s": felix_med,
            "felix_all_s": felix_s,
            "felix_first_apply_s": statistics.median(apply_s) if apply_s else None,
            "kernel_load_s": kernel_med,
            "kernel_all_s": kernel_s,
            "ratio": felix_med / kernel_med,
            "felix_ready_no_remote_s": ready0,
            "rss_no_remote_mib": rss0 / 1024,
            "rss_remote_mib": statistics.median(rss) / 1024,
            "rss_per_1k_remote_mib": (statistics.median(rss) - rss0) / 1024 / (args.remote / 1000),
        }
    finally:
        await b.close()


# --- 4. throughput ----------------------------------------------------------------------------------------


# The cost of stateful filtering alone: a table whose only rule is the conntrack match Calico's table starts with.
CT_ONLY_TABLE = """table inet benchct {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
	}
}
"""


async def bench_throughput(args: argparse.Namespace) -> dict[str, Any]:
    b = Bench(datastore=args.datastore, backend="nftables")
    try:
        await b.build(args.local, args.policies, args.remote)
        b.wait_ready()
        assert b.world is not None
        server, client = b.world.workloads["w1"], b.world.workloads["client"]
        texts = save_ruleset(b)
        b.stop_felix()  # the ruleset stays; stopping felix keeps it from repairing the table we remove below
        table = b.tmp / "final.nft"
        table.write_text(texts["nft"])
        ct_only = b.tmp / "ct-only.nft"
        ct_only.write_text(CT_ONLY_TABLE)
        with_calico, without, conntrack = [], [], []
        for _ in range(args.runs):
            clear_host_tables(b)
            without.append(iperf(server.netns, server.ipv4, client.netns, args.seconds))
            sh("ip", "netns", "exec", b.host, "nft", "-f", str(ct_only))
            conntrack.append(iperf(server.netns, server.ipv4, client.netns, args.seconds))
            sh("ip", "netns", "exec", b.host, "nft", "delete", "table", "inet", "benchct")
            sh("ip", "netns", "exec", b.host, "nft", "-f", str(table))
            with_calico.append(iperf(server.netns, server.ipv4, client.netns, args.seconds))
        med_with, med_without = statistics.median(with_calico), statistics.median(without)
        med_ct = statistics.median(conntrack)
        return {
            "policies": args.policies,
            "remote": args.remote,
            "runs": args.runs,
            "seconds": args.seconds,
            "with_calico_gbps": med_with / 1e9,
            "no_rules_gbps": med_without / 1e9,
            "ratio": med_with / med_without,
            "with_all_gbps": [round(x / 1e9, 2) for x in with_calico],
            "without_all_gbps": [round(x / 1e9, 2) for x in without],
            "conntrack_only_gbps": med_ct / 1e9,
            "ratio_vs_conntrack_only": med_with / med_ct,
            "conntrack_all_gbps": [round(x / 1e9, 2) for x in conntrack],
        }
    finally:
        await b.close()


# --- main -------------------------------------------------------------------------------------------------


def show(mode: str, r: dict[str, Any]) -> None:
    if mode == "latency":
        print(
            f"write-to-traffic latency, {r['datastore']} datastore, {r['backend']}: {r['local']} local endpoints, "
            f"{r['policies']} policies, {r['remote']} remote endpoints, {r['samples']} samples"
        )
        print(
            f"{'p50':>10} {'p90':>10} {'p99':>10} {'min':>10} {'max':>10} {'write p50':>10}   goal p50 <= 10, p99 <= 50"
        )
        print(
            f"{r['p50_ms']:>7.1f} ms {r['p90_ms']:>7.1f} ms {r['p99_ms']:>7.1f} ms {r['min_ms']:>7.1f} ms "
            f"{r['max_ms']:>7.1f} ms {r['write_p50_ms']:>7.2f} ms"
        )
    elif mode == "coldstart":
        print(
            f"cold start, {r['datastore']} datastore, {r['backend']}: {r['local']} local, {r['policies']} policies, "
            f"{r['remote']} remote; ruleset {r['ruleset_lines']} lines; median of {r['runs']}"
            f"{'; flow logs on' if r['flow_logs'] else ''}"
        )
        fa = r["felix_first_apply_s"]
        print(f"{'felix start->ready':>20} {'(first apply)':>14} {'kernel load':>12} {'ratio':>7}   goal <= 1.5x")
        print(
            f"{r['felix_to_ready_s']:>18.2f} s {fa if fa is None else f'{fa:.2f} s':>14} "
            f"{r['kernel_load_s']:>10.3f} s {r['ratio']:>6.1f}x"
        )
        print(
            f"felix RSS: {r['rss_no_remote_mib']:.1f} MiB with 0 remote, {r['rss_remote_mib']:.1f} MiB with "
            f"{r['remote']} remote: {r['rss_per_1k_remote_mib']:.2f} MiB per 1k remote endpoints (goal <= 5 MB)"
        )
    else:
        print(
            f"iperf3 single stream, -t {r['seconds']}, median of {r['runs']} (alternated); {r['policies']} policies, "
            f"{r['remote']} remote endpoints in the allowing IP set"
        )
        print(
            f"{'with Calico':>14} {'no rules':>12} {'ratio':>7}   goal >= 0.95   {'conntrack only':>15} "
            f"{'Calico vs conntrack only':>25}"
        )
        print(
            f"{r['with_calico_gbps']:>9.2f} Gb/s {r['no_rules_gbps']:>7.2f} Gb/s {r['ratio']:>7.3f}   {'':>12} "
            f"{r['conntrack_only_gbps']:>10.2f} Gb/s {r['ratio_vs_conntrack_only']:>25.3f}"
        )
        print(
            f"runs with: {r['with_all_gbps']}  without: {r['without_all_gbps']}  "
            f"conntrack only: {r['conntrack_all_gbps']}"
        )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["latency", "coldstart", "throughput"])
    ap.add_argument("--datastore", choices=["embedded", "etcd"], default="embedded")
    ap.add_argument("--backend", choices=["nftables", "iptables"], default="nftables")
    ap.add_argument("--local", type=int, default=100, help="local workload endpoints (besides the client)")
    ap.add_argument("--policies", type=int, default=200)
    ap.add_argument("--remote", type=int, default=None, help="remote endpoints (default 10000)")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--flow-logs", action="store_true", help="coldstart: with Felix's flow logs on")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--log-level", default="Info", help="felix's FELIX_LOGSEVERITYSCREEN")
    ap.add_argument("--keep-log", default="", help="copy felix's log here at the end")
    args = ap.parse_args()
    if args.remote is None:
        args.remote = 10_000
    fn = {"latency": bench_latency, "coldstart": bench_coldstart, "throughput": bench_throughput}[args.mode]
    result = await fn(args)
    if args.json:
        print(json.dumps({"mode": args.mode, **result}))
    else:
        show(args.mode, result)


if __name__ == "__main__":
    asyncio.run(main())

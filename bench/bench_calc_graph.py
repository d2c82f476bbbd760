"""Calculation graph benchmark: start-of-day snapshot, steady-state endpoint updates, memory per endpoint.

Run: `.venv/bin/python bench/bench_calc_graph.py [--json] [--seed N]` (well under two minutes).

Cluster: 10k WorkloadEndpoints on 100 nodes (100 on this host), 50 namespaces (each a `kns.` profile with
labels), 1k policies (600 GlobalNetworkPolicies and 400 NetworkPolicies over four tiers) whose selectors and
rule selectors come from 500 distinct selector texts, with named ports and nets.
Goals: snapshot (feed every key + on_in_sync + flush) <= 2 s; >= 2,000 endpoint updates/s with one flush per
update (label and IP changes of remote and local endpoints); <= 5 MB more memory per 1k remote endpoints.
Values are encoded before timing starts: the graph's work includes JSON decoding and validation.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import time
import tracemalloc
from typing import Any

from calico.calculation.graph import CalcGraph

SNAPSHOT_GOAL_S = 2.0
UPDATES_GOAL = 2000.0
MEMORY_GOAL_MB = 5.0
N_NODES = 100
EPS_PER_NODE = 100
N_NAMESPACES = 50
N_SELECTORS = 500
N_GNP = 600
N_NP = 400
N_APPS = 500
UPDATES_PER_KIND = 1000
MEMORY_BATCH = 1000
HOST = "node-0"
PREFIX = "/calico/resources/v3/projectcalico.org/"
API = "projectcalico.org/v3"
TIERS = [("security", 100.0), ("platform", 200.0), ("apps", 300.0)]
ROLES = ["frontend", "backend", "db", "cache", "worker"]
ENVS = ["prod", "staging", "dev"]
PORTS = [("http", "TCP", 8080), ("metrics", "TCP", 9090), ("dns", "UDP", 53)]


def enc(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def selector_texts(rng: random.Random) -> list[str]:
    """N_SELECTORS distinct selector texts, mostly hookable (as real selectors are), a few negations."""
    out: dict[str, None] = {}
    i = 0
    while len(out) < N_SELECTORS:
        i += 1
        roll = i % 10
        app = f"app-{rng.randrange(N_APPS)}"
        if roll < 5:
            text = f'app == "{app}"'
        elif roll < 7:
            text = f'app in {{"{app}", "app-{rng.randrange(N_APPS)}"}} && env == "{rng.choice(ENVS)}"'
        elif roll < 8:
            text = f'role == "{rng.choice(ROLES)}" && version == "v{rng.randrange(7)}"'
        elif roll < 9:
            text = f'pcns.team == "team-{rng.randrange(10)}" && role == "{rng.choice(ROLES)}"'
        elif i % 50 == 9:
            text = f'!has(quarantine-{i}) && app == "{app}"'  # hookable through the app operand
        else:
            text = f'app == "{app}" && env != "dev"'
        out[text] = None
    return list(out)


def workload(i: int, rng: random.Random, node: str, ip_salt: int = 0) -> tuple[str, dict[str, Any]]:
    ns = f"ns-{i % N_NAMESPACES}"
    name = f"{node}-k8s-pod{i}-eth0"
    n = i + ip_salt * 65536
    ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
    doc = {
        "apiVersion": API,
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "app": f"app-{rng.randrange(N_APPS)}",
                "role": rng.choice(ROLES),
                "env": rng.choice(ENVS),
                "version": f"v{rng.randrange(7)}",
                "projectcalico.org/orchestrator": "k8s",
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": f"pod{i}",
            "endpoint": "eth0",
            "interfaceName": f"cali{i:011x}",
            "ipNetworks": [f"{ip}/32"],
            "profiles": [f"kns.{ns}", f"ksa.{ns}.default"],
            "serviceAccountName": "default",
            "ports": [{"name": p, "protocol": proto, "port": port} for p, proto, port in PORTS[: 1 + i % 3]],
        },
    }
    return f"{PREFIX}workloadendpoints/{ns}/{name}", doc


def rule(rng: random.Random, selectors: list[str]) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.5:
        return {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"selector": rng.choice(selectors)},
            "destination": {"ports": [rng.choice([80, 443, "http", "metrics"])]},
        }
    if roll < 0.7:
        return {
            "action": "Allow",
            "source": {"selector": rng.choice(selectors), "namespaceSelector": f'team == "team-{rng.randrange(10)}"'},
        }
    if roll < 0.85:
        return {"action": "Deny", "source": {"nets": [f"192.0.{rng.randrange(256)}.0/24"]}}
    if roll < 0.95:
        return {
            "action": "Allow",
            "protocol": "UDP",
            "destination": {"selector": rng.choice(selectors), "ports": ["dns"]},
        }
    return {"action": "Pass", "source": {"notSelector": rng.choice(selectors)}}


def policies(rng: random.Random, selectors: list[str]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i in range(N_GNP + N_NP):
        tier_name = rng.choice([t for t, _ in TIERS] + ["default"])
        name = f"gnp-{i}" if i < N_GNP else f"np-{i}"
        if tier_name != "default":
            name = f"{tier_name}.{name}"
        spec = {
            "tier": tier_name,
            "order": float(rng.randrange(100)),
            "selector": rng.choice(selectors),
            "types": ["Ingress", "Egress"],
            "ingress": [rule(rng, selectors) for _ in range(2)],
            "egress": [rule(rng, selectors)],
        }
        if i < N_GNP:
            doc = {"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec}
            out.append((f"{PREFIX}globalnetworkpolicies/{name}", doc))
        else:
            ns = f"ns-{rng.randrange(N_NAMESPACES)}"
            doc = {
                "apiVersion": API,
                "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": ns},
                "spec": spec,
            }
            out.append((f"{PREFIX}networkpolicies/{ns}/{name}", doc))
    return out


def snapshot(seed: int) -> tuple[list[tuple[str, bytes]], dict[str, dict[str, Any]], list[str]]:
    rng = random.Random(seed)
    selectors = selector_texts(rng)
    items: list[tuple[str, bytes]] = []
    for name, order in TIERS:
        items.append(
            (
                f"{PREFIX}tiers/{name}",
                enc({"apiVersion": API, "kind": "Tier", "metadata": {"name": name}, "spec": {"order": order}}),
            )
        )
    for k in range(N_NAMESPACES):
        ns = f"ns-{k}"
        labels = {"pcns.team": f"team-{k % 10}", "pcns.projectcalico.org/name": ns}
        items.append(
            (
                f"{PREFIX}profiles/kns.{ns}",
                enc(
                    {
                        "apiVersion": API,
                        "kind": "Profile",
                        "metadata": {"name": f"kns.{ns}"},
                        "spec": {
                            "labelsToApply": labels,
                            "ingress": [{"action": "Allow"}],
                            "egress": [{"action": "Allow"}],
                        },
                    }
                ),
            )
        )
    weps: dict[str, dict[str, Any]] = {}
    for node_index in range(N_NODES):
        node = f"node-{node_index}"
        for j in range(EPS_PER_NODE):
            key, doc = workload(node_index * EPS_PER_NODE + j, rng, node)
            weps[key] = doc
            items.append((key, enc(doc)))
    items.extend((key, enc(doc)) for key, doc in policies(rng, selectors))
    rng.shuffle(items)
    return items, weps, selectors


def bench_snapshot(items: list[tuple[str, bytes]]) -> tuple[CalcGraph, float, int]:
    gc.collect()
    graph = CalcGraph(HOST)
    start = time.perf_counter()
    for key, value in items:
        graph.on_update(key, value)
    graph.on_in_sync()
    events = graph.flush()
    return graph, time.perf_counter() - start, len(events)


def make_updates(
    rng: random.Random, weps: dict[str, dict[str, Any]], local: bool, what: str
) -> list[tuple[str, bytes]]:
    keys = [k for k, d in weps.items() if (d["spec"]["node"] == HOST) == local]
    out = []
    for n in range(UPDATES_PER_KIND):
        key = rng.choice(keys)
        doc = json.loads(json.dumps(weps[key]))
        if what == "label":
            doc["metadata"]["labels"]["app"] = f"app-{rng.randrange(N_APPS)}"
        else:
            doc["spec"]["ipNetworks"] = [f"10.200.{(n >> 8) & 255}.{n & 255}/32"]
        weps[key] = doc
        out.append((key, enc(doc)))
    return out


def bench_updates(graph: CalcGraph, weps: dict[str, dict[str, Any]], seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed + 1)
    results = {}
    for local in (False, True):
        for what in ("label", "ip"):
            updates = make_updates(rng, weps, local, what)
            events = 0
            start = time.perf_counter()
            for key, value in updates:
                graph.on_update(key, value)
                events += len(graph.flush())
            elapsed = time.perf_counter() - start
            name = f"{'local' if local else 'remote'} {what} change"
            results[name] = {"updates_per_s": len(updates) / elapsed, "events_per_update": events / len(updates)}
    return results


def bench_memory(graph: CalcGraph, seed: int) -> dict[str, float]:
    """Growth per 1k more remote endpoints: one batch measured by RSS (no tracer running, so the
    tracer's own bookkeeping is not counted), a second by tracemalloc (Python allocations only)."""
    rng = random.Random(seed + 2)
    batches = []
    for b in range(2):
        batch = []
        for i in range(MEMORY_BATCH):
            n = 10_000_000 + b * MEMORY_BATCH + i
            key, doc = workload(n, rng, f"node-{1 + i % (N_NODES - 1)}", ip_salt=3 + b)
            batch.append((key, enc(doc)))
        batches.append(batch)
    gc.collect()
    rss_before = _rss_bytes()
    for key, value in batches[0]:
        graph.on_update(key, value)
    graph.flush()
    gc.collect()
    rss_growth = _rss_bytes() - rss_before
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for key, value in batches[1]:
        graph.on_update(key, value)
    graph.flush()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    traced = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {
        "traced_mb_per_1k": traced / 1e6 * 1000 / MEMORY_BATCH,
        "rss_mb_per_1k": rss_growth / 1e6 * 1000 / MEMORY_BATCH,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # Linux; resident pages is the second field
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    items, weps, selectors = snapshot(args.seed)
    graph, snap_s, snap_events = bench_snapshot(items)
    active = len(graph.active_rules.active_policies())
    sets = len(graph.ipsets.set_ids())
    updates = bench_updates(graph, weps, args.seed)
    memory = bench_memory(graph, args.seed)
    slowest = min(r["updates_per_s"] for r in updates.values())
    ok = snap_s <= SNAPSHOT_GOAL_S and slowest >= UPDATES_GOAL and memory["traced_mb_per_1k"] <= MEMORY_GOAL_MB
    result = {
        "cluster": {
            "workload_endpoints": len(weps),
            "local_endpoints": EPS_PER_NODE,
            "policies": N_GNP + N_NP,
            "distinct_selectors": len(selectors),
            "active_policies": active,
            "ip_sets": sets,
        },
        "snapshot": {"seconds": snap_s, "events": snap_events, "goal_s": SNAPSHOT_GOAL_S},
        "updates": updates,
        "updates_goal_per_s": UPDATES_GOAL,
        "memory": {**memory, "goal_mb_per_1k": MEMORY_GOAL_MB},
        "goals_met": ok,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    c = result["cluster"]
    table = Table(
        title=(
            f"calc graph: {c['workload_endpoints']} endpoints ({c['local_endpoints']} local), {c['policies']} "
            f"policies, {c['distinct_selectors']} selectors; {c['active_policies']} active policies, "
            f"{c['ip_sets']} IP sets"
        )
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("goal", justify="right")
    table.add_row(
        "snapshot (feed + in-sync + flush)", f"{snap_s:.2f} s ({snap_events} events)", f"<= {SNAPSHOT_GOAL_S} s"
    )
    for name, r in updates.items():
        table.add_row(
            f"{name}, one flush each",
            f"{r['updates_per_s']:,.0f}/s ({r['events_per_update']:.1f} events)",
            f">= {UPDATES_GOAL:,.0f}/s",
        )
    table.add_row(
        "memory per 1k remote endpoints (tracemalloc)",
        f"{memory['traced_mb_per_1k']:.2f} MB",
        f"<= {MEMORY_GOAL_MB} MB",
    )
    table.add_row("memory per 1k remote endpoints (RSS delta)", f"{memory['rss_mb_per_1k']:.2f} MB", "")
    table.add_row("all goals met", "yes" if ok else "NO", "")
    Console().print(table)


if __name__ == "__main__":
    main()

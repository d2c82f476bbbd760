"""Calculation graph benchmark: start-of-day snapshot, steady-state endpoint updates, memory per endpoint.

Run: `.venv/bin/python bench/bench_calc_graph.py [--json] [--seed N]` (well under two minutes).

Cluster: 10k WorkloadEndpoints on 100 nodes (100 on this host), 50 namespaces (each a `kns.` profile with
labels), 1k policies (600 GlobalNetworkPolicies and 400 NetworkPolicies over four tiers) whose selectors and
rule selectors come from 500 distinct selector texts, with named ports and nets.
Goals: snapshot (feed every key + on_in_sync + flush) <= 2 s; >= 2,000 endpoint updates/s with one flush per
update (label and IP changes of remote and local endpoints); <= 5 MB more memory per 1k remote endpoints.
Values are encoded before timing starts: the graph's work includes JSON decoding and validation.

Network of hosts (informational, no goal): the same cluster plus one CrossSubnet VXLAN pool over every
workload address, a Node per node (two subnets, a tunnel address each) and a /29 block affinity per 8
addresses, held by the node of the block's first address (a node's 100 addresses are not a whole number of
blocks, so ~4% of workloads hold borrowed addresses, as IPAM leaves a few): the snapshot, then, one flush per
change: remote node subnet changes, remote workload address changes (to new addresses outside every block:
borrowed, a /32 route each), block affinity moves to another node, and pool vxlanMode flips.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import random
import time
import tracemalloc
from typing import Any

from calico.calculation.graph import CalcGraph
from calico.datastore.keys import affinity_key

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


NETWORK_POOL = "10.0.0.0/8"
NETWORK_BLOCK = 29
NETWORK_UPDATES = 500


def network_items(weps: dict[str, dict[str, Any]]) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """The pool, Nodes and block affinities over `weps` (see the module docstring); also block -> holder."""
    items = [
        (
            f"{PREFIX}ippools/vxlan",
            enc(_pool_doc("CrossSubnet")),
        )
    ]
    for n in range(N_NODES):
        spec = {"bgp": {"ipv4Address": f"198.19.{n % 2 + 1}.{n + 1}/24"}, "ipv4VXLANTunnelAddr": f"10.250.0.{n + 1}"}
        items.append(
            (
                f"{PREFIX}nodes/node-{n}",
                enc({"apiVersion": API, "kind": "Node", "metadata": {"name": f"node-{n}"}, "spec": spec}),
            )
        )
    holders: dict[str, str] = {}
    for doc in weps.values():
        addr = ipaddress.ip_interface(doc["spec"]["ipNetworks"][0])
        block = str(ipaddress.ip_network(f"{addr.ip}/{NETWORK_BLOCK}", strict=False))
        if block not in holders or int(addr.ip) == int(ipaddress.ip_network(block).network_address):
            holders[block] = doc["spec"]["node"]
    items.extend((affinity_key(node, block), AFFINITY_CONFIRMED) for block, node in holders.items())
    return items, holders


def _pool_doc(mode: str) -> dict[str, Any]:
    spec = {"cidr": NETWORK_POOL, "vxlanMode": mode, "natOutgoing": True, "blockSize": NETWORK_BLOCK}
    return {"apiVersion": API, "kind": "IPPool", "metadata": {"name": "vxlan"}, "spec": spec}


AFFINITY_CONFIRMED = b'{"state":"confirmed","deleted":false}'


def bench_network(
    items: list[tuple[str, bytes]], weps: dict[str, dict[str, Any]], seed: int
) -> dict[str, tuple[float, str]]:
    """(value, unit) per measure; see the module docstring."""
    rng = random.Random(seed + 3)
    extra, holders = network_items(weps)
    all_items = items + extra
    rng.shuffle(all_items)
    graph, snap_s, snap_events = bench_snapshot(all_items)
    out: dict[str, tuple[float, str]] = {"snapshot with the network": (snap_s, f"s ({snap_events} events)")}

    def rate(changes: list[list[tuple[str, bytes | None]]]) -> tuple[float, str]:
        events = 0
        start = time.perf_counter()
        for change in changes:
            for key, value in change:
                graph.on_update(key, value)
            events += len(graph.flush())
        return len(changes) / (time.perf_counter() - start), f"/s ({events / len(changes):.1f} events)"

    nodes = []
    for i in range(NETWORK_UPDATES):
        n = rng.randrange(1, N_NODES)
        spec = {"bgp": {"ipv4Address": f"198.19.{i % 2 + 1}.{n + 1}/24"}, "ipv4VXLANTunnelAddr": f"10.250.0.{n + 1}"}
        doc = {"apiVersion": API, "kind": "Node", "metadata": {"name": f"node-{n}"}, "spec": spec}
        nodes.append([(f"{PREFIX}nodes/node-{n}", enc(doc))])
    out["remote node subnet change"] = rate(nodes)
    ips = [[u] for u in make_updates(rng, weps, local=False, what="ip")[:NETWORK_UPDATES]]
    out["remote workload address change (borrowed)"] = rate(ips)  # type: ignore[arg-type]
    blocks = sorted(holders)
    moves = []
    for _ in range(NETWORK_UPDATES):
        block = rng.choice(blocks)
        old, new = holders[block], f"node-{rng.randrange(1, N_NODES)}"
        holders[block] = new
        moves.append([(affinity_key(old, block), None), (affinity_key(new, block), AFFINITY_CONFIRMED)])
    out["block affinity move"] = rate(moves)
    flips = [[(f"{PREFIX}ippools/vxlan", enc(_pool_doc(("Always", "CrossSubnet")[i % 2])))] for i in range(10)]
    per_s, unit = rate(flips)  # type: ignore[arg-type]
    out["pool vxlanMode flip"] = (1000 / per_s, f"ms each{unit.removeprefix('/s')}")
    return out


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
    network = bench_network(items, weps, args.seed)
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
        "network": {name: value for name, (value, _) in network.items()},
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
    for name, (value, unit) in network.items():
        table.add_row(f"network: {name}", f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f}{unit}", "")
    table.add_row("all goals met", "yes" if ok else "NO", "")
    Console().print(table)


if __name__ == "__main__":
    main()

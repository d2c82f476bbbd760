"""`calicoctl explain` at scale: one flow, with 1,000 policies and 10,000 endpoints in the datastore.

    .venv/bin/python bench/bench_explain.py [--endpoints 10000] [--policies 1000] [--samples 30] [--backend etcd]

The datastore (embedded SQLite, or a private single-member etcd on 127.0.0.1) is filled with `--endpoints`
workload endpoints on 100 nodes in 20 namespaces (labels app=app-<0..49>, tier, env), 20 namespace profiles,
3 tiers and `--policies` policies (half global, half namespaced, spread over the tiers; each selects one app and
has ingress rules with selectors, ports and named ports, and egress rules). Timed: the read (one list of every
resource key, what `calicoctl explain` does first) and the explanation of a flow between two random endpoints
(parse the flow, resolve its ends, build the calculation graph's view, walk both stages), p50/p99 over
`--samples` flows (the read is not repeated per flow: goal <= 100 ms after the read).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calico.datastore.kv import KVStore, Put
from calico.datastore.store import encode, key_of
from calico.explain.explain import explain
from calico.explain.flow import parse_headers, parse_party
from calico.explain.snapshot import read
from calico.resources import parse_resource
from stores import on_fresh_store, print_rows  # a module beside this one

APPS, NAMESPACES, NODES = 50, 20, 100


def documents(n_endpoints: int, n_policies: int, rnd: random.Random) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for t, order in (("security", 10), ("platform", 20)):
        docs.append({"kind": "Tier", "metadata": {"name": t}, "spec": {"order": order}})
    for n in range(NAMESPACES):
        docs.append({"kind": "Profile", "metadata": {"name": f"kns.ns-{n}"},
                     "spec": {"labelsToApply": {"pcns.projectcalico.org/name": f"ns-{n}"},
                              "ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}})
    for i in range(n_endpoints):
        ip = f"198.18.{i // 250}.{i % 250 + 1}"
        docs.append({"kind": "WorkloadEndpoint",
                     "metadata": {"name": f"wep-{i}", "namespace": f"ns-{i % NAMESPACES}",
                                  "labels": {"app": f"app-{i % APPS}", "tier": rnd.choice(["fe", "be", "db"]),
                                             "env": rnd.choice(["prod", "dev"])}},
                     "spec": {"node": f"node-{i % NODES}", "interfaceName": f"cali{i:011d}",
                              "ipNetworks": [f"{ip}/32"], "profiles": [f"kns.ns-{i % NAMESPACES}"],
                              "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}})
    for p in range(n_policies):
        tier = ["security", "platform", "default"][p % 3]
        name = f"pol-{p}" if tier == "default" else f"{tier}.pol-{p}"
        spec = {"tier": tier, "order": p, "selector": f"app == 'app-{p % APPS}'",
                "ingress": [{"action": "Deny", "protocol": "TCP",
                             "source": {"selector": f"env == 'dev' && app == 'app-{(p + 1) % APPS}'"},
                             "destination": {"ports": [22]}},
                            {"action": "Allow", "protocol": "TCP",
                             "source": {"selector": f"app == 'app-{(p + 7) % APPS}'", "namespaceSelector": "all()"},
                             "destination": {"ports": [443, "http"]}},
                            {"action": "Pass", "source": {"nets": ["10.0.0.0/8"]}}],
                "egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
                           {"action": "Allow",
                            "destination": {"selector": f"app == 'app-{(p - 7) % APPS}'",
                                            "namespaceSelector": "all()"}}]}
        if p % 2:
            docs.append({"kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec})
        else:
            docs.append({"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": f"ns-{p % NAMESPACES}"},
                         "spec": spec})
    return [{"apiVersion": "projectcalico.org/v3", **d} for d in docs]


async def fill(kv: KVStore, docs: list[dict[str, Any]]) -> None:
    ops = []
    for d in docs:
        res = parse_resource(d)
        ops.append(Put(key_of(res).path(), encode(res)))
    for i in range(0, len(ops), 100):
        await kv.txn([], ops[i:i + 100])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def run(kv: KVStore, args: argparse.Namespace) -> list[tuple[str, str]]:
    rnd = random.Random(7)
    docs = documents(args.endpoints, args.policies, rnd)
    t0 = time.perf_counter()
    await fill(kv, docs)
    t_fill = time.perf_counter() - t0
    reads = []
    for _ in range(3):
        t0 = time.perf_counter()
        snapshot = await read(kv)
        reads.append(time.perf_counter() - t0)
    times, verdicts = [], {"allow": 0, "deny": 0}
    for _ in range(args.samples):
        b = rnd.randrange(args.endpoints)
        a = (b + 7) % args.endpoints if rnd.random() < 0.5 else rnd.randrange(args.endpoints)  # half: an allowed app
        port = rnd.choice([22, 443, 8080, 9999])
        t0 = time.perf_counter()
        e = explain(snapshot, parse_party(f"ns-{a % NAMESPACES}/wep-{a}", "--src"),
                    parse_party(f"ns-{b % NAMESPACES}/wep-{b}", "--dst"), parse_headers("tcp", port, None, None, None))
        times.append(time.perf_counter() - t0)
        verdicts[e.verdict] += 1
    return [
        ("keys in the datastore", f"{len(snapshot.values)} (filled in {t_fill:.1f} s)"),
        ("read (list every resource key), median of 3", f"{statistics.median(reads) * 1e3:.0f} ms"),
        ("explain one flow after the read, p50 / p99",
         f"{pct(times, 0.5) * 1e3:.1f} / {pct(times, 0.99) * 1e3:.1f} ms (goal <= 100 ms)"),
        ("verdicts of the sampled flows", json.dumps(verdicts)),
    ]


async def main_async(args: argparse.Namespace) -> None:
    rows = await on_fresh_store(args.backend, "bench-explain-", lambda kv: run(kv, args))
    print_rows(f"explain: {args.endpoints} endpoints, {args.policies} policies, {args.backend}, "
               f"{args.samples} flows", rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", type=int, default=10000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--backend", choices=["embedded", "etcd"], default="embedded")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

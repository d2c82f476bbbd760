"""Scale and cost: a 10k-endpoint snapshot in one flush, and updates whose work follows the change."""

from __future__ import annotations

import random
import time

from calico.calculation.events import IPSetUpdate, PolicyUpdate, WorkloadEndpointUpdate
from tests.unit.calculation.builders import HOST, Feeder, allow, encode, gnp, key_of, np_, profile, wep

N_NODES = 100
PER_NODE = 100
N_APPS = 200


def cluster(rng: random.Random) -> list[dict]:
    docs: list[dict] = [profile(f"kns.ns{k}", {"team": f"t{k % 5}"}) for k in range(20)]
    for n in range(N_NODES):
        node = HOST if n == 0 else f"node{n}"
        for j in range(PER_NODE):
            i = n * PER_NODE + j
            docs.append(
                wep(
                    f"{node}-pod{i}",
                    ns=f"ns{i % 20}",
                    node=node,
                    labels={"app": f"app{rng.randrange(N_APPS)}", "role": rng.choice(["fe", "be", "db"])},
                    ips=[f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"],
                    profiles=[f"kns.ns{i % 20}"],
                    ports=[("http", "TCP", 8080)],
                )
            )
    for p in range(200):
        app = f"app{rng.randrange(N_APPS)}"
        rules = [
            allow(source={"selector": f"app == 'app{rng.randrange(N_APPS)}'"}),
            allow(protocol="TCP", source={"namespaceSelector": f"team == 't{p % 5}'"}, destination={"ports": ["http"]}),
        ]
        if p % 2:
            docs.append(gnp(f"g{p}", order=p, selector=f"app == '{app}'", ingress=rules))
        else:
            docs.append(
                np_(f"n{p}", ns=f"ns{p % 20}", order=p, selector=f"role == 'db' || app == '{app}'", ingress=rules)
            )
    return docs


def test_10k_endpoint_snapshot_and_incremental_cost() -> None:
    rng = random.Random(7)
    docs = cluster(rng)
    encoded = [(key_of(d), encode(d)) for d in docs]
    f = Feeder()
    start = time.perf_counter()
    for key, value in encoded:
        f.graph.on_update(key, value)
    f.graph.on_in_sync()
    events = f.flush()
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"snapshot took {elapsed:.2f}s"
    assert len(f.dp.weps) == PER_NODE
    assert sum(isinstance(e, WorkloadEndpointUpdate) for e in events) == PER_NODE
    assert any(isinstance(e, PolicyUpdate) for e in events)
    assert any(isinstance(e, IPSetUpdate) and len(e.members) > 100 for e in events)  # namespace-wide sets

    # One remote label change: a handful of selector evaluations, none in the policy resolver.
    graph = f.graph
    before_sets, before_policies = graph.ipsets.evaluations, graph.resolver.evaluations
    remote = next(d for d in docs if d["kind"] == "WorkloadEndpoint" and d["spec"]["node"] != HOST)
    remote["metadata"]["labels"]["app"] = "app-new"
    f.put(remote).flush()
    assert graph.ipsets.evaluations - before_sets < 20
    assert graph.resolver.evaluations == before_policies

    # One local label change: only the policy selectors that can care are evaluated.
    local = next(d for d in docs if d["kind"] == "WorkloadEndpoint" and d["spec"]["node"] == HOST)
    local["metadata"]["labels"]["role"] = "fe" if local["metadata"]["labels"]["role"] != "fe" else "be"
    before_policies = graph.resolver.evaluations
    f.put(local).flush()
    assert graph.resolver.evaluations - before_policies < 40


def test_policy_flapping_reuses_parked_set_membership() -> None:
    f = Feeder()
    f.put(wep("w1", labels={"app": "web"}))
    for i in range(50):
        f.put(wep(f"r{i}", node="n2", labels={"role": "client"}, ips=[f"10.1.0.{i + 1}"]))
    f.put(gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "role == 'client'"})]))
    f.flush()
    sid = f.dp.policy_rules("p1").inbound[0].src_ip_set_ids[0]
    f.put(wep("w1", labels={"app": "other"})).flush()
    assert sid not in f.dp.ipsets
    # While the set is out of the dataplane its membership keeps following the cluster.
    f.delete(wep("r0", node="n2")).put(wep("r99", node="n2", labels={"role": "client"}, ips=["10.1.1.1"])).flush()
    before = f.graph.ipsets.evaluations
    events = f.put(wep("w1", labels={"app": "web"})).flush()
    assert f.graph.ipsets.evaluations == before  # nothing re-evaluated
    update = next(e for e in events if isinstance(e, IPSetUpdate))
    assert update.set_id == sid
    assert "10.1.0.1/32" not in update.members and "10.1.1.1/32" in update.members and len(update.members) == 50

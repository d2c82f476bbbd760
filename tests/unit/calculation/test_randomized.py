"""Randomized: incremental updates (flushed at random points) end where a from-scratch graph starts.

Each example is a list of operation seeds; each seed picks a key of a small universe (endpoints on three
nodes, network sets, profiles, tiers, policies of both kinds, Felix configuration) and either a random
valid value or a delete. The incremental graph's events are folded into a model dataplane that checks
every ordering and reference invariant as it goes (`builders.Dataplane`); at the end its state must equal
that of a fresh graph fed the final datastore contents (in shuffled order) and flushed once.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calculation.graph import CalcGraph
from calico.resources import parse_resource
from tests.unit.calculation.builders import (
    HOST,
    Dataplane,
    encode,
    felix_config,
    from_scratch,
    gnp,
    hep,
    key_of,
    netset,
    np_,
    profile,
    tier,
    wep,
)

NAMESPACES = ["ns1", "ns2"]
NODES = [HOST, "n2", "n3"]
SELECTORS = [
    "app == 'a'",
    "app == 'b'",
    "has(env)",
    "!has(env)",
    "env != 'x'",
    "app in {'a', 'c'}",
    "all()",
    "role == 'r' || app == 'c'",
    "pcns.team == 'blue'",
    "color == 'red'",
    "projectcalico.org/serviceaccount == 'sa1'",
]
NS_SELECTORS = ["team == 'blue'", "all()", "global()", "!has(team)", "projectcalico.org/name == 'ns2'"]
IPS = [f"10.0.0.{i}" for i in range(1, 7)] + ["fd00::1", "fd00::2"]
NETS = ["1.0.0.0/8", "2.2.0.0/16", "10.0.0.1/32", "10.0.0.0/24", "3.3.3.3/32"]
MANY_NETS = [f"172.16.{i}.0/24" for i in range(10)]
PORTS = [("http", "TCP", 80), ("http", "TCP", 8080), ("dns", "UDP", 53), ("web", "TCP", 443)]
PROFILES = ["kns.ns1", "kns.ns2", "prof-a", "prof-b"]
GNPS = [("gp0", "default"), ("gp1", "default"), ("t1.gp2", "t1"), ("t2.gp3", "t2")]
NPS = [("ns1", "np0", "default"), ("ns1", "t1.np1", "t1"), ("ns2", "np0", "default")]


def labels(rng: random.Random) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, values in (("app", "abc"), ("env", "xy"), ("role", "r"), ("color", ["red", "blue"])):
        if rng.random() < 0.5:
            out[key] = rng.choice(list(values))
    return out


def entity(rng: random.Random, protocol: str | None) -> dict[str, Any]:
    ent: dict[str, Any] = {}
    r = rng.random
    if r() < 0.5:
        ent["selector"] = rng.choice(SELECTORS)
    if r() < 0.2:
        ent["notSelector"] = rng.choice(SELECTORS)
    if r() < 0.25:
        ent["namespaceSelector"] = rng.choice(NS_SELECTORS)
    if r() < 0.1:
        ent["serviceAccounts"] = {"names": rng.sample(["sa1", "sa2"], rng.randint(1, 2))}
    if r() < 0.2:
        ent["nets"] = MANY_NETS if r() < 0.3 else rng.sample(NETS[:2] + NETS[3:], 2)
    if r() < 0.1:
        ent["notNets"] = MANY_NETS if r() < 0.3 else ["3.3.3.3/32"]
    if protocol in ("TCP", "UDP") and r() < 0.6:
        ent["ports"] = rng.sample([80, "http", "1000:2000", "dns", "web"], rng.randint(1, 3))
    if protocol in ("TCP", "UDP") and r() < 0.1:
        ent["notPorts"] = [rng.choice([22, "http"])]
    return ent


def rules(rng: random.Random, max_rules: int = 3, ingress: bool = True) -> list[dict[str, Any]]:
    out = []
    for _ in range(rng.randint(0, max_rules)):
        action = rng.choice(["Allow", "Deny", "Pass", "Log", "Allow"])
        rule: dict[str, Any] = {"action": action}
        protocol = rng.choice([None, "TCP", "UDP", "ICMP", None])
        if protocol:
            rule["protocol"] = protocol
        if protocol == "ICMP" and rng.random() < 0.5:
            rule["icmp"] = {"type": 8}
        rule["source"] = entity(rng, protocol)
        rule["destination"] = entity(rng, protocol)
        if ingress and action == "Allow" and protocol in (None, "TCP") and rng.random() < 0.05:
            rule["http"] = {"methods": ["GET"]}  # unrenderable: left out
        out.append(rule)
    return out


def random_doc(rng: random.Random) -> dict[str, Any]:
    kind = rng.choices(
        ["wep", "hep", "netset", "gns", "profile", "tier", "gnp", "np", "config"],
        weights=[10, 3, 2, 2, 3, 2, 5, 4, 1],
    )[0]
    if kind == "wep":
        ns = rng.choice(NAMESPACES)
        extra: dict[str, Any] = {}
        if rng.random() < 0.3:
            extra["serviceAccountName"] = rng.choice(["sa1", "sa2"])
        return wep(
            f"w{rng.randint(0, 7)}",
            ns=ns,
            node=rng.choice(NODES),
            labels=labels(rng),
            ips=rng.sample(IPS, rng.randint(1, 2)),
            profiles=rng.sample([f"kns.{ns}", "prof-a", "prof-b", "missing"], rng.randint(0, 3)),
            ports=_ports(rng),
            **extra,
        )
    if kind == "hep":
        return hep(
            f"h{rng.randint(0, 2)}",
            node=rng.choice(NODES),
            labels=labels(rng),
            ips=[f"192.168.0.{rng.randint(1, 4)}"],
            profiles=rng.sample(["prof-a", "prof-b"], rng.randint(0, 2)),
            ports=_ports(rng),
        )
    if kind == "netset":
        return netset("s0", rng.sample(NETS, rng.randint(1, 3)), ns=rng.choice(NAMESPACES), labels=labels(rng))
    if kind == "gns":
        return netset(f"g{rng.randint(0, 1)}", rng.sample(NETS, rng.randint(1, 3)), labels=labels(rng))
    if kind == "profile":
        name = rng.choice(PROFILES)
        lta = {"team": rng.choice(["blue", "red"])} if rng.random() < 0.7 else {}
        if rng.random() < 0.3:
            lta["color"] = "red"
        return profile(name, lta, ingress=rules(rng, 2), egress=rules(rng, 2, ingress=False))
    if kind == "tier":
        return tier(
            rng.choice(["t1", "t2", "default"]),
            order=rng.choice([None, 1, 5, 5, 2_000_000]),
            default_action=rng.choice([None, "Deny", "Pass"]),
        )
    if kind == "gnp":
        name, tier_name = rng.choice(GNPS)
        spec = _policy_spec(rng, tier_name)
        if rng.random() < 0.2:
            spec["namespaceSelector"] = rng.choice([s for s in NS_SELECTORS if s != "global()"])
        flag = rng.random()
        if flag < 0.1:
            spec.update(doNotTrack=True, applyOnForward=True)
        elif flag < 0.2:
            spec.update(preDNAT=True, applyOnForward=True, types=["Ingress"])
            spec.pop("egress", None)
        elif flag < 0.3:
            spec["applyOnForward"] = True
        return gnp(name, **spec)
    if kind == "np":
        ns, name, tier_name = rng.choice(NPS)
        return np_(name, ns=ns, **_policy_spec(rng, tier_name))
    return felix_config(
        rng.choice(["default", f"node.{HOST}", "node.n2"]),
        logSeverityScreen=rng.choice(["Info", "Debug"]),
        **({"ipipEnabled": True} if rng.random() < 0.5 else {}),
    )


def _ports(rng: random.Random) -> list[tuple[str, str, int]]:
    chosen: dict[str, tuple[str, str, int]] = {}
    for port in rng.sample(PORTS, rng.randint(0, 2)):
        chosen.setdefault(port[0], port)
    return list(chosen.values())


def _policy_spec(rng: random.Random, tier_name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"tier": tier_name, "selector": rng.choice(SELECTORS)}
    if rng.random() < 0.7:
        spec["order"] = rng.choice([1, 2, 2, 10])
    spec["ingress"] = rules(rng)
    spec["egress"] = rules(rng, ingress=False)
    if rng.random() < 0.5:
        spec["types"] = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
    return spec


def random_op(seed: int) -> tuple[str, bytes | None, bool]:
    """(key, value or None, flush after this op)."""
    rng = random.Random(seed)
    doc = random_doc(rng)
    parse_resource(doc)  # the generator must make valid values; bad ones have their own tests
    value = None if rng.random() < 0.15 else encode(doc)
    return key_of(doc), value, rng.random() < 0.5


def run(graph: CalcGraph, dp: Dataplane) -> None:
    dp.apply(graph.flush())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32), min_size=1, max_size=80), st.randoms())
def test_incremental_matches_from_scratch(seeds: list[int], shuffler: random.Random) -> None:
    incremental, dp = CalcGraph(HOST), Dataplane()
    batched, dp_batched = CalcGraph(HOST), Dataplane()
    store: dict[str, bytes] = {}
    incremental.on_in_sync()
    batched.on_in_sync()
    for seed in seeds:
        key, value, flush = random_op(seed)
        if value is None:
            store.pop(key, None)
        else:
            store[key] = value
        incremental.on_update(key, value)
        batched.on_update(key, value)
        if flush:
            run(incremental, dp)
    run(incremental, dp)
    run(batched, dp_batched)

    scratch, dp_scratch = from_scratch(store, shuffler)

    expected = dp_scratch.state()
    assert dp.state() == expected
    assert dp_batched.state() == expected
    assert dp.in_syncs == dp_scratch.in_syncs == 1
    # Only sets that active rules use exist.
    assert scratch.ipsets.set_ids() == expected["ipsets"].keys()


def test_generator_is_lively() -> None:
    """The random universe actually exercises sets, policies and endpoints (guards the test above)."""
    graph, dp = CalcGraph(HOST), Dataplane()
    for seed in range(400):
        key, value, _ = random_op(seed)
        graph.on_update(key, value)
    run(graph, dp)
    state = dp.state()
    assert len(state["weps"]) >= 3 and len(state["policies"]) >= 3 and len(state["ipsets"]) >= 5
    assert any(members for _, members in state["ipsets"].values())


def test_long_random_histories() -> None:
    """A few long histories (hypothesis favours short ones), flushing at random points."""
    for trial in range(4):
        rng = random.Random(trial)
        incremental, dp = CalcGraph(HOST), Dataplane()
        store: dict[str, bytes] = {}
        incremental.on_in_sync()
        for _ in range(300):
            key, value, flush = random_op(rng.getrandbits(32))
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
            incremental.on_update(key, value)
            if flush:
                run(incremental, dp)
        run(incremental, dp)
        _, dp_scratch = from_scratch(store, rng)
        assert dp.state() == dp_scratch.state()

"""The agreement test through the lab's own daemons: for random policy worlds applied with `calicoctl apply`,
enforced by each host's calico-felix (started by calico-node), `explain`'s verdict equals what real packets do.

Two hosts: workloads a and b on h1, c on h2 (namespaces ns1, ns1, ns2, addresses from IPAM), so flows cross
hosts and both Felixes decide. Per example Hypothesis draws labels, profiles, tiers and policies
(`tests/dataplane/policy_strategies`, nets drawn around the workloads' real addresses); one `calicoctl apply`
writes the workload endpoints' labels and profiles, the policies, and last a sentinel policy with a new name
that selects a sentinel workload on each host. Felix applies the datastore in order, one transaction per batch,
so once both hosts' rulesets carry the sentinel every earlier document is enforced. Then the flows are
explained from one datastore read (what `calicoctl explain` does) and probed.
`tests/dataplane/test_explain_agreement.py` runs many more examples against the backends directly (both
firewall backends); this one checks the whole path: calicoctl, datastore, syncer, Felix, kernel.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from calico.datastore.config import open_kv
from calico.explain.explain import explain
from calico.explain.flow import parse_headers, parse_party
from calico.explain.snapshot import read
from calico.lab import build
from calico.resources import ResourceError, load_documents
from tests.dataplane import policy_strategies as ps
from tests.lab.conftest import Lab, LabFactory

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(400)]

PLACES = {"a": "h1", "b": "h1", "c": "h2"}
TIMEOUT = 0.5
_examples = itertools.count(1)


@pytest.fixture(scope="module")
def lab(lab_factory: LabFactory) -> Iterator[Lab]:
    lab = lab_factory("nftables", "embedded", "--hosts", "2")
    for n, host in PLACES.items():
        lab.cli("workload", "add", f"{n}@{host}", "--namespace", ps.NAMESPACES[n])
    lab.cli("workload", "add", "s1@h1", "s2@h2", "--namespace", "sentinels", "--labels", "sentinel=yes")
    lab.cli("wait", "--timeout", "60")
    yield lab


@pytest.fixture(scope="module")
def endpoints(lab: Lab) -> dict[str, dict[str, Any]]:
    return _endpoints(lab)


def _endpoints(lab: Lab) -> dict[str, dict[str, Any]]:
    """The lab's WorkloadEndpoint of a, b and c, as documents to apply again with other labels."""
    got = json.loads(lab.ctl("get", "workloadendpoints", "--all-namespaces", "-o", "json").stdout)
    items = got["items"] if isinstance(got, dict) and "items" in got else got
    by_name = {w.endpoint_name: n for n, w in lab.state.workloads.items() if n in PLACES}
    out = {}
    for doc in items:
        name = by_name.get(doc["metadata"]["name"])
        if name:
            meta = {k: doc["metadata"][k] for k in ("name", "namespace")}
            out[name] = {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint", "metadata": meta,
                         "spec": doc["spec"]}
    assert set(out) == set(PLACES), f"endpoints found: {sorted(out)}"
    return out


def _sentinel(k: int) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"sentinel-{k}"},
            "spec": {"selector": "sentinel == 'yes'", "order": 1000, "ingress": [{"action": "Allow"}]}}


def _programmed(lab: Lab, name: str) -> bool:
    return all(name in lab.in_host("nft", "list", "ruleset", host=h).stdout for h in ("h1", "h2"))


def _delete_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What to delete before the next example: policies first, then their tier."""
    return sorted((d for d in docs if d["kind"] in ("GlobalNetworkPolicy", "NetworkPolicy", "Tier")),
                  key=lambda d: d["kind"] == "Tier")


async def _explained(lab: Lab, flows: list[tuple[str, str, str, int | None, bool]]) -> list[str]:
    kv = await open_kv(build.store_config(lab.state))
    try:
        snapshot = await read(kv)
    finally:
        await kv.close()
    wls = lab.state.workloads
    out = []
    for src, dst, proto, port, v6 in flows:
        s, d = (wls[src].ipv6, wls[dst].ipv6) if v6 else (wls[src].ipv4, wls[dst].ipv4)
        headers = parse_headers(proto, port, None, 8 if proto == "icmp" else None, 0 if proto == "icmp" else None)
        out.append(explain(snapshot, parse_party(s, "--src"), parse_party(d, "--dst"), headers).verdict)
    return out


@settings(max_examples=6, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(data=st.data(), flows=ps.flows())
def test_explain_agrees_with_the_lab(lab: Lab, endpoints: dict[str, dict[str, Any]], data: st.DataObject,
                                     flows: Any) -> None:
    wls = lab.state.workloads
    nets = ps.nets_around({n: wls[n].ipv4 for n in PLACES}, {n: wls[n].ipv6 for n in PLACES})
    wl_labels, profiles, policy_docs = data.draw(ps.world_docs(nets))
    try:
        load_documents(ps.as_yaml(policy_docs))
    except ResourceError:
        assume(False)
    docs_of = copy.deepcopy(endpoints)
    for n, doc in docs_of.items():
        doc["metadata"]["labels"] = wl_labels[n]
        doc["spec"]["profiles"] = profiles[n]
        doc["spec"]["ports"] = [{"name": "http", "protocol": "TCP", "port": 8080},
                                {"name": "dns", "protocol": "UDP", "port": 5353}]
    k = next(_examples)
    docs = [*docs_of.values(), *policy_docs, _sentinel(k)]
    lab.apply(ps.as_yaml(docs))
    try:
        start = time.monotonic()
        lab.wait_for(lambda: _programmed(lab, f"sentinel-{k}"), 20, f"both Felixes programmed example {k}",
                     interval=0.1)
        told = asyncio.run(_explained(lab, flows))
        for (src, dst, proto, port, v6), verdict in zip(flows, told, strict=True):
            kernel = lab.can(src, dst, proto, port or 0, ipv6=v6, timeout=TIMEOUT)
            if (verdict == "allow") != kernel:
                pytest.fail(f"{src} -> {dst} {proto} {port} {'v6' if v6 else 'v4'}: explain says {verdict}, the "
                            f"kernel {'passed' if kernel else 'dropped'} it (programmed after "
                            f"{time.monotonic() - start:.1f} s)\ndocuments:\n{ps.as_yaml(docs)}")
    finally:
        lab.delete(ps.as_yaml(_delete_docs([*policy_docs, _sentinel(k)])))

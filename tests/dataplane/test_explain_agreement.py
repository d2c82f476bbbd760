"""The agreement test: for random policy worlds, `explain`'s verdict equals what the kernel does, on both
firewall backends (nftables, and iptables in its nft and legacy flavours).

Per example: Hypothesis draws labels, profiles, tiers and policies (`policy_strategies`); the documents are
validated as Calico resources (a world Calico would refuse is skipped); the calculation graph Felix runs (this
host "h1") turns them into the desired state that the backend programs into the world's host namespace; then,
for a few flows among the three workloads (TCP, UDP, ICMP; IPv4 and IPv6), the explanation's verdict is compared
with a real probe. A disagreement fails with the explanation and the documents.
Run: `flock /tmp/calico-netns.lock .venv/bin/python -m pytest tests/dataplane/test_explain_agreement.py`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings

from calico.calculation.graph import CalcGraph
from calico.dataplane.iptables import IptablesBackend
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.transport import LibNftTransport
from calico.dataplane.state import DesiredState
from calico.datastore.store import encode, key_of
from calico.explain.explain import explain
from calico.explain.flow import parse_headers, parse_party
from calico.explain.snapshot import Snapshot
from calico.resources import ResourceError, load_documents
from tests.dataplane import policy_strategies as ps
from tests.helpers.netns import World

pytestmark = pytest.mark.heavy

BACKENDS = ["nftables", "iptables-nft", "iptables-legacy"]
TIMEOUT = 0.5


def _backend(world: World, kind: str) -> Any:
    if kind == "nftables":
        return NftBackend(LibNftTransport(world.host))
    flavour = kind.split("-", 1)[1]
    for tool in (f"iptables-{flavour}-restore", f"ip6tables-{flavour}-restore", "ipset"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    return IptablesBackend(world.host, flavour)


def _snapshot(docs: list[dict[str, Any]]) -> Snapshot | None:
    try:
        resources = load_documents(ps.as_yaml(docs))
    except ResourceError:
        return None
    return Snapshot(1, {key_of(r).path(): encode(r) for r in resources})


def _felix_state(snapshot: Snapshot) -> DesiredState:
    graph = CalcGraph("h1")
    for key, value in snapshot.values.items():
        graph.on_update(key, value)
    graph.on_in_sync()
    state = DesiredState()
    state.apply_all(graph.flush())
    return state


def program(world: World, kind: str, snapshot: Snapshot) -> None:
    """What Felix on "h1" would program for `snapshot`, written by backend `kind` into the world's host."""
    backend = _backend(world, kind)
    try:
        asyncio.run(backend.apply(_felix_state(snapshot)))
    finally:
        if hasattr(backend, "close"):
            backend.close()


@pytest.fixture
def three(world: World) -> World:
    for n in ps.NAMES:
        world.add_workload(n, ps.V4[n], ps.V6[n])
    return world


@pytest.mark.parametrize("kind", BACKENDS)
@settings(max_examples=8, deadline=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(drawn=ps.world_docs(), flows=ps.flows())
def test_explain_agrees_with_the_kernel(three: World, kind: str, drawn: Any, flows: Any) -> None:
    wl_labels, profiles, policy_docs = drawn
    ifaces = {n: three.workloads[n].iface for n in ps.NAMES}
    docs = ps.workload_docs(ifaces, wl_labels, profiles) + policy_docs
    snapshot = _snapshot(docs)
    assume(snapshot is not None)
    assert snapshot is not None
    program(three, kind, snapshot)
    for src, dst, proto, port, v6 in flows:
        dst_ip = (ps.V6 if v6 else ps.V4)[dst]
        src_ip = (ps.V6 if v6 else ps.V4)[src]
        headers = parse_headers(proto, port, None, 8 if proto == "icmp" else None, 0 if proto == "icmp" else None)
        told = explain(snapshot, parse_party(src_ip, "--src"), parse_party(dst_ip, "--dst"), headers)
        kernel = three.probe(three.workloads[src], dst_ip, proto, port or 0, timeout=TIMEOUT)
        if (told.verdict == "allow") != kernel:
            pytest.fail(f"{kind}: {src} -> {dst} {proto} {port} {'v6' if v6 else 'v4'}: explain says "
                        f"{told.verdict}, the kernel {'passed' if kernel else 'dropped'} it\n"
                        f"explanation: {json.dumps(told.to_json(), indent=1)}\ndocuments:\n{ps.as_yaml(docs)}")

"""The start-of-day fast paths give exactly what the full paths give, and fall back whenever they cannot.

Covers `Resource.parse_json_fast` (WorkloadEndpoint values straight from JSON text, used by the graph's
decoder), the canonical-IPv4 shortcut of workload `ipNetworks`, and `LabelIndex` sharing an item's own
labels as its effective labels when no parent has any.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any, cast

import pytest

from calico.calculation.decoder import BadValue, Change, decode_update
from calico.resources import ResourceError, WorkloadEndpoint, parse_resource
from calico.resources.endpoint import _check_host_cidr
from calico.resources.fields import parse_interface
from calico.selector import parse
from calico.selector.index import LabelIndex

KEY = "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/node1-k8s-pod-eth0"

BASE: dict[str, Any] = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "WorkloadEndpoint",
    "metadata": {
        "name": "node1-k8s-pod-eth0", "namespace": "ns1", "labels": {"app": "web", "projectcalico.org/namespace": "ns1"},
        "uid": "u1", "creationTimestamp": "2026-11-28T00:00:00Z", "generation": 3, "annotations": {"a": "b"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "controller": True}],
    },
    "spec": {
        "orchestrator": "k8s", "node": "node1", "containerID": "abc123", "pod": "pod", "endpoint": "eth0",
        "ipNetworks": ["10.0.0.1/32", "fd00::1/128"], "ipNATs": [{"internalIP": "10.0.0.1", "externalIP": "1.2.3.4"}],
        "profiles": ["kns.ns1"], "interfaceName": "cali12345", "mac": "aa:bb:cc:dd:ee:ff",
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "hostPort": 8080, "hostIP": "1.2.3.4"}],
        "allowSpoofedSourcePrefixes": ["10.1.0.0/16"],
    },
}
ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1.5, 2**70, "", "x", "10.0.0.01/32", "1.2.3.4/24", "fd00::1", [], ["a"], {}, {"a": 1},
    {"a": "b"}, "WorkloadEndpoint", "a" * 300, "\ud800", 65536, "SCTP",
]


def _slow(raw: bytes) -> WorkloadEndpoint | None:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("kind") != "WorkloadEndpoint":
            return None
        res = parse_resource(data)
    except (ResourceError, ValueError):
        return None
    assert isinstance(res, WorkloadEndpoint)
    return res


def _mutate(doc: dict[str, Any], rng: random.Random) -> None:
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            paths.append((node, k))
            walk(v)

    walk(doc)
    parent, k = rng.choice(paths)
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[k]
    elif isinstance(parent, dict) and rng.random() < 0.15:
        parent[rng.choice(["extra", "kind", "apiVersion"])] = copy.deepcopy(rng.choice(ODD_VALUES))
    else:
        parent[k] = copy.deepcopy(rng.choice(ODD_VALUES))


def test_fast_json_path_agrees_with_the_full_path() -> None:
    rng = random.Random(5)
    accepted = 0
    for _ in range(3000):
        doc = copy.deepcopy(BASE)
        for _ in range(rng.choice([0, 1, 2])):
            _mutate(doc, rng)
        raw = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        fast = WorkloadEndpoint.parse_json_fast(raw)
        slow = _slow(raw)
        if fast is None:
            continue  # the caller falls back to the full path, whatever it says
        assert slow is not None, raw
        assert fast == slow and fast.to_dict() == slow.to_dict()
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.metadata.model_fields_set == slow.metadata.model_fields_set
        assert fast.spec.model_fields_set == slow.spec.model_fields_set
        accepted += 1
    assert accepted > 300


@pytest.mark.parametrize("missing", ["apiVersion", "kind"])
def test_required_type_fields_are_still_required(missing: str) -> None:
    doc = copy.deepcopy(BASE)
    del doc[missing]
    raw = json.dumps(doc).encode()
    assert WorkloadEndpoint.parse_json_fast(raw) is None
    out = decode_update(KEY, raw)
    assert isinstance(out, BadValue)


def test_bad_workload_values_still_name_the_resource_and_field() -> None:
    doc = copy.deepcopy(BASE)
    doc["spec"]["ipNetworks"] = ["10.0.0.0/24"]
    out = decode_update(KEY, json.dumps(doc).encode())
    assert isinstance(out, BadValue)
    assert "WorkloadEndpoint(ns1/node1-k8s-pod-eth0)" in out.reason
    assert "spec.ipNetworks[0]" in out.reason and "multiple addresses" in out.reason
    good = decode_update(KEY, json.dumps(BASE).encode())
    assert isinstance(good, Change) and good.resource is not None


def test_canonical_ipv4_shortcut_matches_the_full_parse() -> None:
    def full(text: str) -> str:
        try:
            iface = parse_interface(text, "IP network")
        except ValueError:
            return "error"
        if iface.network.prefixlen != iface.max_prefixlen:
            return "error"
        return f"{iface.ip}/{iface.max_prefixlen}"

    def shortcut(text: str) -> str:
        try:
            return _check_host_cidr(text)
        except ValueError:
            return "error"

    rng = random.Random(3)
    octets = ["0", "00", "1", "07", "10", "25", "199", "200", "249", "250", "255", "256", "999", "2550", "\u0661"]
    cases = ["1.2.3.4", "1.2.3.4/32", " 1.2.3.4", "1.2.3.4\n", "1.2.3.4/032", "1.2.3.4/", "fd00::1", "fd00::1/128"]
    for _ in range(5000):
        parts = [rng.choice(octets) for _ in range(rng.choice([3, 4, 4, 5]))]
        cases.append(".".join(parts) + rng.choice(["", "/32", "/31", "/0", "/33", "/", "\n"]))
    for text in cases:
        assert shortcut(text) == full(text), text


def test_effective_labels_without_parent_labels_then_with() -> None:
    started: list[tuple[object, object]] = []
    index = LabelIndex(lambda s, i: started.append((s, i)), lambda s, i: started.remove((s, i)))
    index.update_selector("sel", parse('app == "web" && env == "prod"'))
    index.update_labels("item", {"app": "web"}, ["parent"])
    assert index.effective_labels("item") == {"app": "web"} and started == []
    index.update_parent_labels("parent", {"env": "prod", "app": "db"})
    assert index.effective_labels("item") == {"app": "web", "env": "prod"}  # own labels win
    assert started == [("sel", "item")]
    index.delete_parent_labels("parent")
    assert index.effective_labels("item") == {"app": "web"} and started == []


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_daemon_finds_local_endpoints_however_the_node_is_spelled(ensure_ascii: bool) -> None:
    from calico.calculation.events import WorkloadEndpointID
    from calico.datastore.kv import KVStore
    from calico.felix.config import FelixConfig
    from calico.felix.daemon import FelixDaemon
    from calico.felix.driver import RecordingDriver

    host = "h\u00f6st-1"  # non-ASCII: JSON may carry it escaped (\u00f6) or verbatim
    daemon = FelixDaemon(FelixConfig.load({"FELIX_FELIXHOSTNAME": host}, None), cast(KVStore, object()),
                         lambda c, m: RecordingDriver())
    wid = WorkloadEndpointID("ns1", "w1")
    doc = {"spec": {"node": host, "orchestrator": "k8s", "pod": "pod", "endpoint": "eth0"}}
    daemon._track_wep(wid, json.dumps(doc, ensure_ascii=ensure_ascii).encode())
    assert wid in daemon._local_weps
    daemon._track_wep(wid, json.dumps(doc, ensure_ascii=ensure_ascii).encode("utf-16"))
    assert wid in daemon._local_weps
    doc["spec"]["node"] = "other"
    daemon._track_wep(wid, json.dumps(doc).encode())
    assert wid not in daemon._local_weps

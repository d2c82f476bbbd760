"""Loading manifest text (YAML, JSON, multi-document, lists), error reporting, dumping, round trips
for every kind, and the kind registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from calico.resources import (
    KINDS,
    GlobalNetworkPolicy,
    IPPool,
    NetworkPolicy,
    Problem,
    Resource,
    ResourceError,
    dump_documents,
    kind_for,
    load_documents,
    parse_resource,
)

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
MANIFEST_FILES = sorted(MANIFESTS.glob("*.yaml"))

POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool1
spec:
  cidr: 198.18.0.0/16
"""


def load_file(path: Path) -> list[Resource]:
    return load_documents(path.read_text(), source=path.name)


# --- the documentation-style manifests ---------------------------------------------------------------------


def test_manifests_cover_every_kind() -> None:
    kinds = {r.KIND for path in MANIFEST_FILES for r in load_file(path)}
    assert kinds == set(KINDS)


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: p.name)
def test_manifest_round_trips(path: Path) -> None:
    resources = load_file(path)
    assert resources
    for res in resources:
        again = parse_resource(res.to_dict())
        assert again == res
        assert again.to_dict() == res.to_dict()
        # Through text too, in both output formats.
        assert load_documents(dump_documents([res], "yaml")) == [res]
        assert load_documents(dump_documents([res], "json")) == [res]
    assert load_documents(dump_documents(resources, "yaml")) == resources


def test_round_trip_of_a_rich_policy() -> None:
    text = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.rich
  labels: {a: b}
  annotations: {note: text}
  resourceVersion: "42"
  uid: 0a1b2c
  creationTimestamp: 2024-01-02T03:04:05Z
spec:
  tier: security
  order: 10.5
  selector: has(app) && app in {'a', 'b'}
  namespaceSelector: team == 'x'
  serviceAccountSelector: role == 'y'
  applyOnForward: true
  doNotTrack: true
  ingress:
  - action: Deny
    ipVersion: 4
    protocol: ICMP
    icmp: {type: 8, code: 0}
    notProtocol: 17
    source:
      nets: [198.18.0.1/15]
      notNets: [198.19.1.0/24]
      selector: "!has(x)"
      notSelector: a == 'b'
      namespaceSelector: global()
      serviceAccounts: {names: [x], selector: y == 'z'}
  egress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, "8080:8090", http]
      notPorts: [81]
  - action: Allow
    destination:
      services: {name: api, namespace: prod}
"""
    [res] = load_documents(text)
    assert isinstance(res, GlobalNetworkPolicy)
    assert res.metadata.creationTimestamp == "2024-01-02T03:04:05Z"  # kept as text, not a datetime
    assert res.spec.types == ["Ingress", "Egress"]
    assert load_documents(dump_documents(res)) == [res]
    assert load_documents(dump_documents(res, "json")) == [res]


def test_unquoted_port_ranges_stay_ranges() -> None:
    # YAML 1.1 would read 6040:6050 as a base-60 number; Calico's decoder reads a range.
    text = POOL.replace("IPPool", "GlobalNetworkPolicy").replace("  cidr: 198.18.0.0/16\n", "") + (
        "  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [6040:6050, 1:30]\n"
    )
    [res] = load_documents(text)
    assert res.spec.ingress[0].destination.ports == ["6040:6050", "1:30"]


# --- input forms ------------------------------------------------------------------------------------------------


def test_multi_document_yaml_skips_empty_documents() -> None:
    text = "---\n" + POOL + "---\n\n---\n" + POOL.replace("pool1", "pool2").replace("198.18", "198.19") + "---\n"
    assert [r.name for r in load_documents(text)] == ["pool1", "pool2"]


def test_empty_text() -> None:
    assert load_documents("") == []
    assert load_documents("# only a comment\n") == []


def test_json_input() -> None:
    data = yaml.safe_load(POOL)
    [res] = load_documents(json.dumps(data))
    assert isinstance(res, IPPool)
    [res2] = load_documents(json.dumps(data, indent=4))
    assert res2 == res


def test_lists() -> None:
    pool = yaml.safe_load(POOL)
    generic = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "List",
        "items": [pool, {**pool, "metadata": {"name": "p2"}}],
    }
    assert [r.name for r in load_documents(yaml.safe_dump(generic))] == ["pool1", "p2"]
    bare = {k: v for k, v in pool.items() if k not in ("kind", "apiVersion")}
    typed = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPoolList",
        "metadata": {"resourceVersion": "7"},
        "items": [bare],
    }
    [res] = load_documents(json.dumps(typed))
    assert isinstance(res, IPPool)
    assert load_documents(yaml.safe_dump({"kind": "List", "items": []})) == []


def test_list_problems() -> None:
    pool = yaml.safe_load(POOL)
    wrong = {"kind": "IPPoolList", "items": [{**pool, "kind": "Profile"}], "extra": 1}
    with pytest.raises(ResourceError) as info:
        load_documents(yaml.safe_dump(wrong), "l.yaml")
    text = str(info.value)
    assert 'l.yaml document 1 items[0]: kind: a IPPoolList cannot hold a "Profile"' in text
    assert "IPPoolList: extra: unknown field" in text
    with pytest.raises(ResourceError, match="items: must be a list"):
        load_documents(yaml.safe_dump({"kind": "List", "items": {"a": 1}}))


# --- errors ------------------------------------------------------------------------------------------------------


def test_every_problem_in_every_document_is_reported() -> None:
    text = (
        POOL
        + "---\n"
        + """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: ns1
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [80, 443, "90:80"]
  - action: Accept
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: Bad_Pool
spec:
  cidr: 198.18.0.0/16
  madeUp: 1
"""
    )
    with pytest.raises(ResourceError) as info:
        load_documents(text, source="policy.yaml")
    lines = str(info.value).splitlines()
    first = "policy.yaml document 2: NetworkPolicy(ns1/allow-web): spec.ingress[0].destination.ports[2]: "
    assert lines[0] == first + 'invalid port range "90:80": min > max'
    assert lines[1].startswith(
        "policy.yaml document 2: NetworkPolicy(ns1/allow-web): spec.ingress[1].action: must be 'Allow'"
    )
    assert any(
        line.startswith("policy.yaml document 3: IPPool(Bad_Pool): metadata.name: invalid name") for line in lines
    )
    assert "policy.yaml document 3: IPPool(Bad_Pool): spec.madeUp: unknown field" in lines
    assert len(info.value.problems) == 4
    p = info.value.problems[0]
    assert (p.kind, p.name, p.namespace, p.field_path) == (
        "NetworkPolicy",
        "allow-web",
        "ns1",
        "spec.ingress[0].destination.ports[2]",
    )


def test_problem_rendering() -> None:
    p = Problem("NetworkPolicy", "allow-web", "ns1", "spec.ingress[0].action", "required field missing")
    assert str(p) == "NetworkPolicy(ns1/allow-web): spec.ingress[0].action: required field missing"
    assert str(Problem("IPPool", "", None, "metadata.name", "required field missing", "f.yaml document 1")) == (
        "f.yaml document 1: IPPool: metadata.name: required field missing"
    )
    assert str(ResourceError("plain message")) == "plain message"
    assert isinstance(ResourceError("x"), ValueError)


def test_missing_type_meta() -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource({"kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "198.18.0.0/16"}})
    assert str(info.value) == "IPPool(p): apiVersion: required field missing"
    with pytest.raises(ResourceError, match=r"apiVersion: must be projectcalico.org/v3 \(got \"v1\"\)"):
        parse_resource(
            {"apiVersion": "v1", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "198.18.0.0/16"}}
        )
    with pytest.raises(ResourceError, match="kind: required field missing"):
        parse_resource({"apiVersion": "projectcalico.org/v3", "metadata": {"name": "p"}})
    with pytest.raises(ResourceError, match="did you mean IPPool"):
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "ippool", "metadata": {"name": "p"}})
    with pytest.raises(ResourceError, match="metadata: required field missing"):
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Profile"})
    with pytest.raises(ResourceError, match="must be a mapping"):
        parse_resource(["not", "a", "mapping"])  # type: ignore[arg-type]


def test_malformed_yaml_reports_line_and_column() -> None:
    with pytest.raises(ResourceError) as info:
        load_documents("apiVersion: projectcalico.org/v3\nkind: [IPPool\nmetadata: {}\n", source="bad.yaml")
    msg = str(info.value)
    assert msg.startswith("bad.yaml: invalid YAML at line 3, column")


def test_malformed_json_reports_line_and_column() -> None:
    with pytest.raises(ResourceError, match=r"^bad.json: invalid JSON at line 2, column 2: "):
        load_documents('{"apiVersion": "projectcalico.org/v3"\n "kind": "IPPool"}', source="bad.json")


def test_json_stream() -> None:
    data = yaml.safe_load(POOL)
    other = {**data, "metadata": {"name": "pool2"}, "spec": {"cidr": "198.19.0.0/16"}}
    assert [r.name for r in load_documents(json.dumps(data) + "\n" + json.dumps(other, indent=2))] == ["pool1", "pool2"]


def test_non_mapping_documents() -> None:
    with pytest.raises(ResourceError, match="document 2: document is not a mapping"):
        load_documents(POOL + "---\n- just\n- a list\n")
    with pytest.raises(ResourceError, match="document 1: document is not a mapping"):
        load_documents("just a string")


def test_invalid_document_stops_the_whole_file() -> None:
    with pytest.raises(ResourceError) as info:
        load_documents(POOL + "---\n" + POOL.replace("198.18.0.0/16", "nonsense"))
    assert len(info.value.problems) == 1 and info.value.problems[0].source == "document 2"


# --- dumping -------------------------------------------------------------------------------------------------------


def test_dump_single_and_list() -> None:
    [pool] = load_documents(POOL)
    single = yaml.safe_load(dump_documents([pool]))
    assert single["kind"] == "IPPool" and single["spec"]["blockSize"] == 26
    many = yaml.safe_load(dump_documents([pool, pool]))
    assert many["kind"] == "IPPoolList" and many["apiVersion"] == "projectcalico.org/v3" and len(many["items"]) == 2
    forced = json.loads(dump_documents([pool], "json", as_list=True))
    assert forced["kind"] == "IPPoolList" and forced["items"][0]["metadata"]["name"] == "pool1"
    assert yaml.safe_load(dump_documents([], as_list=True)) == {
        "apiVersion": "projectcalico.org/v3",
        "kind": "List",
        "items": [],
    }
    gnp = parse_resource(
        {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "g"}}
    )
    assert yaml.safe_load(dump_documents([pool, gnp]))["kind"] == "List"
    with pytest.raises(ValueError, match="unknown output format"):
        dump_documents([pool], "xml")  # type: ignore[arg-type]


def test_yaml_output_is_sorted_like_calicoctl() -> None:
    [pool] = load_documents(POOL)
    text = dump_documents(pool)
    assert text.index("apiVersion") < text.index("kind") < text.index("metadata") < text.index("spec")
    assert text.index("allowedUses") < text.index("blockSize") < text.index("cidr")


# --- registry --------------------------------------------------------------------------------------------------


EXPECTED_PLURALS = {
    "Node": "nodes",
    "WorkloadEndpoint": "workloadendpoints",
    "HostEndpoint": "hostendpoints",
    "Profile": "profiles",
    "Tier": "tiers",
    "NetworkPolicy": "networkpolicies",
    "GlobalNetworkPolicy": "globalnetworkpolicies",
    "StagedNetworkPolicy": "stagednetworkpolicies",
    "StagedGlobalNetworkPolicy": "stagedglobalnetworkpolicies",
    "NetworkSet": "networksets",
    "GlobalNetworkSet": "globalnetworksets",
    "IPPool": "ippools",
    "IPReservation": "ipreservations",
    "BGPConfiguration": "bgpconfigurations",
    "BGPPeer": "bgppeers",
    "FelixConfiguration": "felixconfigurations",
    "ClusterInformation": "clusterinformations",
}


def test_kinds_table() -> None:
    assert {k: c.PLURAL for k, c in KINDS.items()} == EXPECTED_PLURALS
    assert {k for k, c in KINDS.items() if c.NAMESPACED} == {"NetworkPolicy", "StagedNetworkPolicy", "NetworkSet",
                                                             "WorkloadEndpoint"}
    for kind, cls in KINDS.items():
        assert kind == cls.KIND and kind.lower() in cls.SHORT_NAMES


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("NetworkPolicy", NetworkPolicy),
        ("networkpolicies", NetworkPolicy),
        ("policy", NetworkPolicy),
        ("GNP", GlobalNetworkPolicy),
        ("globalnetworkpolicies", GlobalNetworkPolicy),
        ("ippools", IPPool),
        ("IPPool", IPPool),
        ("pool", IPPool),
        ("ippool.projectcalico.org", IPPool),
    ],
)
def test_kind_for(alias: str, kind: type[Resource]) -> None:
    assert kind_for(alias) is kind


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("wep", "WorkloadEndpoint"),
        ("heps", "HostEndpoint"),
        ("gns", "GlobalNetworkSet"),
        ("bgppeer", "BGPPeer"),
        ("bgpconfig", "BGPConfiguration"),
        ("felixconfig", "FelixConfiguration"),
        ("clusterinfo", "ClusterInformation"),
        ("netset", "NetworkSet"),
        ("nodes", "Node"),
        ("tiers", "Tier"),
        ("profiles", "Profile"),
    ],
)
def test_kind_for_short_names(alias: str, kind: str) -> None:
    assert kind == kind_for(alias).KIND


def test_kind_for_unknown() -> None:
    with pytest.raises(ResourceError, match="unknown resource type 'pods'"):
        kind_for("pods")


def test_datetime_timestamps_from_plain_yaml_loaders() -> None:
    data = yaml.safe_load(POOL + "  natOutgoing: true\n")
    data["metadata"]["creationTimestamp"] = yaml.safe_load("2024-01-02T03:04:05Z")  # a datetime
    assert parse_resource(data).metadata.creationTimestamp == "2024-01-02T03:04:05Z"


def test_non_string_field_names() -> None:
    with pytest.raises(ResourceError, match=r"metadata\[1\]: field names must be strings"):
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "p", 1: "x"}})


def test_yaml_output_quotes_number_like_strings() -> None:
    text = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: p
  labels: {a: "1e5", b: "0755", c: "0x1f", d: "2024-01-01", e: "yes"}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: ["1e5", "6040:6050", "1:30"]
"""
    [res] = load_documents(text)
    out = dump_documents(res)
    assert load_documents(out) == [res]
    assert yaml.safe_load(out)["metadata"]["labels"] == res.metadata.labels

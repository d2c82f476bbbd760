"""Property tests: whatever junk goes into the loader, only ResourceError comes out, and whatever is
accepted survives a round trip through `to_dict` and through text."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico.resources import KINDS, Resource, ResourceError, dump_documents, load_documents, parse_resource

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
VALID_DOCS: list[dict[str, Any]] = [
    d for path in sorted(MANIFESTS.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d
]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings that reach deep into validators, mixed with arbitrary text.
INTERESTING = st.sampled_from(
    [
        "",
        " ",
        "all()",
        "global()",
        "has(a)",
        "a == 'b'",
        "a ==",
        "!",
        "198.18.0.1",
        "198.18.0.0/15",
        "fd00::/8",
        "fd00::1",
        "[fd00::1]:179",
        "198.18.0.1:179",
        "TCP",
        "tcp",
        "ICMP",
        "ICMPv6",
        "UDPLite",
        "80",
        "80:90",
        "90:80",
        "http",
        "Allow",
        "Deny",
        "Pass",
        "Ingress",
        "Egress",
        "default",
        "1m30s",
        "0",
        "-1s",
        "1.2",
        "Never",
        "Always",
        "CrossSubnet",
        "eth0",
        "*",
        "ca:fe:1d:52:bb:e9",
        "projectcalico.org/v3",
        "List",
        "\x00",
        "\u00b5s",
        "a" * 300,
        "1e999",
        "NaN",
    ]
)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | INTERESTING
)
KEYS = st.text(max_size=12) | st.sampled_from(
    [
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "name",
        "namespace",
        "labels",
        "ingress",
        "egress",
        "action",
        "protocol",
        "ports",
        "nets",
        "selector",
        "source",
        "destination",
        "icmp",
        "types",
        "cidr",
        "items",
    ]
)
JUNK = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS | st.integers(0, 3), children, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """A valid manifest with one subtree replaced by junk, or one junk key added."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID_DOCS)))
    path = draw(st.sampled_from(_paths(doc)))
    junk = draw(JUNK)
    if not path:
        return junk
    parent = doc
    for seg in path[:-1]:
        parent = parent[seg]
    if draw(st.booleans()) or not isinstance(parent, dict):
        parent[path[-1]] = junk
    else:
        parent[draw(KEYS)] = junk
    return doc


@st.composite
def plausible_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Right type meta for a real kind, with a junk spec made of that kind's own field names."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    spec_model = KINDS[kind].model_fields["spec"].annotation
    field_names = sorted(getattr(spec_model, "model_fields", {})) or ["x"]
    spec = draw(st.dictionaries(st.sampled_from(field_names), JUNK, max_size=4))
    meta = draw(
        st.fixed_dictionaries({"name": st.sampled_from(["default", "x", "a.b", "Bad"])}, optional={"namespace": LEAVES})
    )
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def _check_round_trip(res: Resource) -> None:
    assert parse_resource(res.to_dict()) == res
    assert load_documents(dump_documents([res], "json")) == [res]


def _parse(data: Any) -> None:
    try:
        res = parse_resource(data)
    except ResourceError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
        return
    _check_round_trip(res)


def _load(text: str) -> None:
    try:
        resources = load_documents(text, source="fuzz.yaml")
    except ResourceError as exc:
        assert exc.problems
        return
    for res in resources:
        _check_round_trip(res)


@SETTINGS
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    _load(text)


@SETTINGS
@given(JUNK)
def test_random_structures(data: Any) -> None:
    _parse(data)
    _load(json.dumps(data, allow_nan=True))


@SETTINGS
@given(mutated_documents())
def test_mutated_manifests(doc: Any) -> None:
    _parse(doc)
    try:
        text = yaml.safe_dump_all([doc, doc])
    except yaml.YAMLError:
        return
    _load(text)


@SETTINGS
@given(plausible_documents())
def test_plausible_documents(doc: dict[str, Any]) -> None:
    _parse(doc)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(VALID_DOCS), min_size=1, max_size=4), st.sampled_from(["yaml", "json"]))
def test_valid_documents_round_trip_as_lists(docs: list[dict[str, Any]], fmt: str) -> None:
    resources = [parse_resource(d) for d in docs]
    assert load_documents(dump_documents(resources, fmt)) == resources  # type: ignore[arg-type]


def test_deeply_nested_input() -> None:
    for text in ("[" * 5000 + "]" * 5000, "a:\n" + "".join("  " * i + "- \n" for i in range(2000)), "{" * 3000):
        _load(text)
    _parse(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "Profile",
            "metadata": {"name": "p"},
            "spec": {"labelsToApply": json.loads("[" * 900 + "]" * 900)},
        }
    )

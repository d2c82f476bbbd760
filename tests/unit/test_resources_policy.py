"""NetworkPolicy, GlobalNetworkPolicy and Tier: defaults, type derivation, tiered names, GNP flags."""

from __future__ import annotations

from typing import Any

import pytest

from calico.resources import GlobalNetworkPolicy, NetworkPolicy, ResourceError, Tier, parse_resource

API = "projectcalico.org/v3"


def np(spec: dict[str, Any] | None = None, name: str = "p", namespace: str | None = "ns1") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    d: dict[str, Any] = {"apiVersion": API, "kind": "NetworkPolicy", "metadata": meta}
    if spec is not None:
        d["spec"] = spec
    return d


def gnp(spec: dict[str, Any] | None = None, name: str = "p") -> dict[str, Any]:
    d: dict[str, Any] = {"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": name}}
    if spec is not None:
        d["spec"] = spec
    return d


def invalid(data: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(data)
    found = [(p.field_path, p.message) for p in info.value.problems]
    assert any(p == path and fragment in m for p, m in found), found


ALLOW = {"action": "Allow"}


def test_defaults() -> None:
    res = parse_resource(np({}))
    assert isinstance(res, NetworkPolicy)
    assert res.spec.tier == "default" and res.spec.selector == "all()" and res.spec.types == ["Ingress"]
    assert res.spec.order is None
    assert res.to_dict()["spec"] == {"tier": "default", "selector": "all()", "types": ["Ingress"]}


def test_spec_may_be_omitted() -> None:
    res = parse_resource(gnp())
    assert isinstance(res, GlobalNetworkPolicy) and res.spec.types == ["Ingress"]


@pytest.mark.parametrize(
    ("rules", "types"),
    [
        ({}, ["Ingress"]),
        ({"ingress": [ALLOW]}, ["Ingress"]),
        ({"egress": [ALLOW]}, ["Egress"]),
        ({"ingress": [ALLOW], "egress": [ALLOW]}, ["Ingress", "Egress"]),
        ({"ingress": [], "egress": []}, ["Ingress"]),
        ({"egress": [ALLOW], "types": ["Ingress", "Egress"]}, ["Ingress", "Egress"]),
        ({"ingress": [ALLOW], "types": ["Egress"]}, ["Egress"]),
        ({"types": []}, ["Ingress"]),
    ],
)
def test_types_defaulting(rules: dict[str, Any], types: list[str]) -> None:
    assert parse_resource(np(rules)).spec.types == types
    assert parse_resource(gnp(rules)).spec.types == types


def test_invalid_types() -> None:
    invalid(np({"types": ["ingress"]}), "spec.types[0]", "must be 'Ingress' or 'Egress'")
    invalid(np({"types": ["Ingress", "Ingress"]}), "spec.types[1]", "more than once")


@pytest.mark.parametrize(("order", "stored"), [(100, 100.0), (1.5, 1.5), (-3, -3.0), (0, 0.0)])
def test_order(order: Any, stored: float) -> None:
    res = parse_resource(np({"order": order}))
    assert res.spec.order == stored and isinstance(res.spec.order, float)
    assert res.to_dict()["spec"]["order"] == order


@pytest.mark.parametrize("order", ["100", True, float("nan"), float("inf"), [1]])
def test_invalid_order(order: Any) -> None:
    invalid(np({"order": order}), "spec.order", "number")


def test_selector_validated_and_canonical() -> None:
    assert parse_resource(np({"selector": "role=='db'"})).spec.selector == 'role == "db"'
    assert parse_resource(np({"selector": ""})).spec.selector == "all()"
    invalid(np({"selector": "role == "}), "spec.selector", "invalid selector")
    invalid(np({"selector": "global()"}), "spec.selector", "namespaceSelector")
    invalid(np({"serviceAccountSelector": "a =="}), "spec.serviceAccountSelector", "invalid selector")


# --- tiers and policy names ------------------------------------------------------------------------------


def test_tiered_policy_names() -> None:
    assert parse_resource(np({"tier": "security"}, name="security.allow-dns")).name == "security.allow-dns"
    assert parse_resource(gnp({"tier": "security"}, name="security.allow-dns")).name == "security.allow-dns"
    assert parse_resource(np({}, name="default.allow-dns")).spec.tier == "default"
    invalid(np({"tier": "security"}, name="allow-dns"), "metadata.name", 'must be named "security.<name>"')
    invalid(gnp({"tier": "security"}, name="other.allow-dns"), "metadata.name", 'must be named "security.<name>"')
    invalid(np({}, name="security.allow-dns"), "metadata.name", "implies tier")


@pytest.mark.parametrize("name", ["allow-web", "a", "t1.allow-web", "knp.default.allow.web.x"])
def test_policy_names(name: str) -> None:
    tier = {"tier": "t1"} if name.startswith("t1.") else {}
    assert parse_resource(np(tier, name=name)).name == name


@pytest.mark.parametrize("name", ["Allow", "a.b.c", "a_b", "-a", "a" * 254, ""])
def test_invalid_policy_names(name: str) -> None:
    invalid(np({}, name=name), "metadata.name", "name")
    invalid(gnp({}, name=name), "metadata.name", "name")


def test_invalid_tier_field() -> None:
    invalid(np({"tier": "Bad.Tier"}), "spec.tier", "invalid tier name")


def test_namespace_rules() -> None:
    # A namespaced kind may omit its namespace: the caller defaults it, as calicoctl does.
    assert parse_resource(np({}, namespace=None)).namespace is None
    with pytest.raises(ResourceError) as info:
        parse_resource({**gnp({}), "metadata": {"name": "p", "namespace": "ns1"}})
    assert str(info.value) == (
        "GlobalNetworkPolicy(ns1/p): metadata.namespace: "
        "GlobalNetworkPolicy is not namespaced; remove metadata.namespace"
    )


# --- global policy flags -------------------------------------------------------------------------------------


def test_gnp_flags() -> None:
    res = parse_resource(
        gnp({"preDNAT": True, "applyOnForward": True, "ingress": [ALLOW], "namespaceSelector": "a == 'b'"})
    )
    assert isinstance(res, GlobalNetworkPolicy)
    assert res.spec.preDNAT and res.spec.applyOnForward and not res.spec.doNotTrack
    out = res.to_dict()["spec"]
    assert out["preDNAT"] is True and "doNotTrack" not in out
    assert parse_resource(gnp({"doNotTrack": True, "applyOnForward": True})).spec.doNotTrack


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"preDNAT": True}, "spec.applyOnForward", "must be true"),
        ({"doNotTrack": True}, "spec.applyOnForward", "must be true"),
        ({"preDNAT": True, "doNotTrack": True, "applyOnForward": True}, "spec.preDNAT", "cannot both be true"),
        ({"preDNAT": True, "applyOnForward": True, "egress": [ALLOW]}, "spec.egress", "cannot have egress"),
        ({"preDNAT": True, "applyOnForward": True, "types": ["Egress"]}, "spec.types", "cannot have type Egress"),
        ({"applyOnForward": "yes"}, "spec.applyOnForward", "true or false"),
        ({"namespaceSelector": "x =="}, "spec.namespaceSelector", "invalid selector"),
    ],
)
def test_invalid_gnp_flags(spec: dict[str, Any], path: str, fragment: str) -> None:
    invalid(gnp(spec), path, fragment)


def test_namespaced_policy_has_no_global_fields() -> None:
    invalid(np({"preDNAT": True}), "spec.preDNAT", "unknown field")
    invalid(np({"namespaceSelector": "all()"}), "spec.namespaceSelector", "unknown field")


# --- Tier ------------------------------------------------------------------------------------------------------


def tier(spec: dict[str, Any] | None = None, name: str = "security") -> dict[str, Any]:
    d: dict[str, Any] = {"apiVersion": API, "kind": "Tier", "metadata": {"name": name}}
    if spec is not None:
        d["spec"] = spec
    return d


def test_tier() -> None:
    t = parse_resource(tier({"order": 100}))
    assert isinstance(t, Tier) and t.spec.order == 100.0 and t.spec.defaultAction == "Deny"
    assert t.to_dict()["spec"] == {"order": 100, "defaultAction": "Deny"}
    assert parse_resource(tier({"defaultAction": "Pass"})).spec.defaultAction == "Pass"
    default = parse_resource(tier({"defaultAction": "Deny"}, name="default"))
    assert default.name == "default" and default.spec.order is None


def test_invalid_tier() -> None:
    invalid(tier({"defaultAction": "Allow"}), "spec.defaultAction", "must be 'Deny' or 'Pass'")
    invalid(tier({}, name="a.b"), "metadata.name", "invalid tier name")
    invalid(tier({}, name="t" * 64), "metadata.name", "limit is 63")
    invalid(tier({"order": "first"}), "spec.order", "number")

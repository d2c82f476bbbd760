"""Rule and EntityRule validation: actions, IP versions, protocols vs ports and ICMP, CIDR families,
selectors, list limits, service accounts, services and HTTP matches."""

from __future__ import annotations

from typing import Any

import pytest

from calico.resources import GlobalNetworkPolicy, NetworkPolicy, ResourceError, Rule, parse_resource

API = "projectcalico.org/v3"


def gnp(ingress: list[dict[str, Any]] | None = None, egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": API, "kind": "GlobalNetworkPolicy", "metadata": {"name": "p"}, "spec": spec}


def rule(**fields: Any) -> Rule:
    res = parse_resource(gnp([{"action": "Allow", **fields}]))
    assert isinstance(res, GlobalNetworkPolicy) and res.spec.ingress
    return res.spec.ingress[0]


def invalid(fields: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(gnp([fields]))
    found = [(p.field_path, p.message) for p in info.value.problems]
    assert any(p == "spec.ingress[0]" + path and fragment in m for p, m in found), found


@pytest.mark.parametrize("action", ["Allow", "Deny", "Log", "Pass"])
def test_actions(action: str) -> None:
    assert parse_resource(gnp([{"action": action}])).spec.ingress[0].action == action


@pytest.mark.parametrize("action", ["allow", "Drop", "", 1])
def test_invalid_actions(action: Any) -> None:
    invalid({"action": action}, ".action", "must be 'Allow', 'Deny', 'Log' or 'Pass'")


def test_action_is_required() -> None:
    invalid({"protocol": "TCP"}, ".action", "required field missing")


def test_ip_version() -> None:
    assert rule(ipVersion=6).ipVersion == 6
    invalid({"action": "Allow", "ipVersion": 5}, ".ipVersion", "must be 4 or 6")
    invalid({"action": "Allow", "ipVersion": "4"}, ".ipVersion", "must be 4 or 6")


def test_unknown_rule_field() -> None:
    invalid({"action": "Allow", "destinaton": {}}, ".destinaton", "unknown field")
    invalid({"action": "Allow", "source": {"net": ["198.18.0.0/15"]}}, ".source.net", "unknown field")


# --- ports need a port-carrying protocol ---------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP", "tcp", 6, 17, 132])
def test_ports_with_port_protocols(protocol: Any) -> None:
    r = rule(protocol=protocol, source={"ports": [1024]}, destination={"notPorts": ["8000:9000"]})
    assert r.destination.notPorts == ["8000:9000"]


@pytest.mark.parametrize("protocol", [None, "ICMP", "UDPLite", 1, 47])
def test_ports_without_port_protocol_rejected(protocol: Any) -> None:
    fields: dict[str, Any] = {"action": "Allow", "destination": {"ports": [80]}}
    if protocol is not None:
        fields["protocol"] = protocol
    invalid(fields, ".destination.ports", "must set protocol to TCP, UDP or SCTP")


def test_not_ports_in_source_need_protocol_too() -> None:
    invalid({"action": "Allow", "notProtocol": "TCP", "source": {"notPorts": [22]}}, ".source.notPorts", "protocol")


def test_named_ports_allowed_in_source_and_destination() -> None:
    r = rule(protocol="TCP", source={"ports": ["client"]}, destination={"ports": ["http", 8080]})
    assert r.source.ports == ["client"] and r.destination.ports == ["http", 8080]


def test_port_list_limit() -> None:
    assert len(rule(protocol="TCP", destination={"ports": list(range(1, 51))}).destination.ports or []) == 50
    invalid(
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": list(range(1, 52))}},
        ".destination.ports",
        "at most 50",
    )


# --- ICMP ------------------------------------------------------------------------------------------------


def test_icmp_fields() -> None:
    r = rule(protocol="ICMP", icmp={"type": 8, "code": 0})
    assert r.icmp is not None and (r.icmp.type, r.icmp.code) == (8, 0)
    assert rule(protocol="ICMPv6", notICMP={"type": 128}).notICMP is not None
    assert rule(protocol=1, icmp={"type": 254, "code": 255}).icmp is not None


@pytest.mark.parametrize(
    ("icmp", "path", "fragment"),
    [
        ({"type": 255}, ".icmp.type", "0-254"),
        ({"type": -1}, ".icmp.type", "0-254"),
        ({"type": 3, "code": 256}, ".icmp.code", "0-255"),
        ({"code": 1}, ".icmp.code", "without an ICMP type"),
        ({"type": 8, "extra": 1}, ".icmp.extra", "unknown field"),
    ],
)
def test_invalid_icmp_fields(icmp: dict[str, Any], path: str, fragment: str) -> None:
    invalid({"action": "Allow", "protocol": "ICMP", "icmp": icmp}, path, fragment)


@pytest.mark.parametrize("field", ["icmp", "notICMP"])
def test_icmp_needs_icmp_protocol(field: str) -> None:
    invalid({"action": "Allow", "protocol": "TCP", field: {"type": 8}}, f".{field}", "protocol to ICMP or ICMPv6")
    invalid({"action": "Allow", field: {"type": 8}}, f".{field}", "protocol to ICMP or ICMPv6")


def test_icmp_protocol_must_agree_with_ip_version() -> None:
    assert rule(protocol="ICMP", ipVersion=4).ipVersion == 4
    assert rule(protocol="ICMPv6", ipVersion=6).ipVersion == 6
    invalid({"action": "Allow", "protocol": "ICMP", "ipVersion": 6}, ".ipVersion", "must be 4")
    invalid({"action": "Allow", "protocol": "ICMPv6", "ipVersion": 4}, ".ipVersion", "must be 6")
    invalid({"action": "Allow", "notProtocol": "ICMP", "ipVersion": 6}, ".ipVersion", "must be 4")


# --- nets -------------------------------------------------------------------------------------------------


def test_nets_are_canonicalised_and_checked_against_ip_version() -> None:
    r = rule(ipVersion=4, source={"nets": ["198.18.3.4/16"], "notNets": ["198.18.9.9"]})
    assert r.source.nets == ["198.18.0.0/16"] and r.source.notNets == ["198.18.9.9/32"]
    r6 = rule(ipVersion=6, destination={"nets": ["FD00::1/8"]})
    assert r6.destination.nets == ["fd00::/8"]
    invalid({"action": "Allow", "ipVersion": 6, "source": {"nets": ["198.18.0.0/15"]}}, ".source.nets", "ipVersion 6")
    invalid(
        {"action": "Allow", "ipVersion": 4, "destination": {"notNets": ["fd00::/8"]}},
        ".destination.notNets",
        "ipVersion 4",
    )


def test_mixed_ip_families_rejected() -> None:
    invalid(
        {"action": "Allow", "source": {"nets": ["198.18.0.0/15", "fd00::/8"]}}, ".source.nets", "both IPv4 and IPv6"
    )
    invalid(
        {"action": "Allow", "source": {"nets": ["198.18.0.0/15"]}, "destination": {"nets": ["fd00::/8"]}},
        ".destination.nets",
        "both IPv4 and IPv6",
    )


def test_nets_limit() -> None:
    nets = [f"198.18.{i // 256}.{i % 256}" for i in range(256)]
    assert len(rule(source={"nets": nets}).source.nets or []) == 256
    invalid({"action": "Allow", "source": {"nets": [*nets, "198.19.0.1"]}}, ".source.nets", "at most 256")


def test_ip_version_helper() -> None:
    assert rule().ip_version() is None
    assert rule(protocol="ICMPv6").ip_version() == 6
    assert rule(destination={"nets": ["198.18.0.0/15"]}).ip_version() == 4


# --- selectors ----------------------------------------------------------------------------------------------


def test_selectors_are_stored_canonically() -> None:
    r = rule(source={"selector": "role=='frontend'", "notSelector": "has(x)", "namespaceSelector": "team == 'a'"})
    assert r.source.selector == 'role == "frontend"'
    assert r.source.notSelector == "has(x)"
    assert r.source.namespaceSelector == 'team == "a"'


def test_empty_entity_selector_means_unset() -> None:
    assert rule(source={"selector": ""}).source.selector is None


@pytest.mark.parametrize("field", ["selector", "notSelector", "namespaceSelector"])
def test_invalid_selectors(field: str) -> None:
    invalid({"action": "Allow", "source": {field: "role == "}}, f".source.{field}", "invalid selector")


def test_global_only_alone_in_namespace_selector() -> None:
    assert rule(destination={"namespaceSelector": "global()"}).destination.namespaceSelector == "global()"
    invalid({"action": "Allow", "source": {"selector": "global()"}}, ".source.selector", "namespaceSelector")
    invalid(
        {"action": "Allow", "source": {"namespaceSelector": "global() && a == 'b'"}},
        ".source.namespaceSelector",
        "combined",
    )
    # A quoted value that merely mentions global() is fine.
    assert rule(source={"selector": "a == 'global()'"}).source.selector == 'a == "global()"'


# --- service accounts, services, HTTP ------------------------------------------------------------------------


def test_service_accounts() -> None:
    r = rule(source={"serviceAccounts": {"names": ["api", "web"], "selector": "app == 'x'"}})
    assert r.source.serviceAccounts is not None and r.source.serviceAccounts.names == ["api", "web"]
    invalid(
        {"action": "Allow", "source": {"serviceAccounts": {"selector": "app =="}}},
        ".source.serviceAccounts.selector",
        "invalid",
    )
    invalid(
        {"action": "Allow", "source": {"serviceAccounts": {"names": ["Bad_Name"]}}},
        ".source.serviceAccounts.names[0]",
        "invalid",
    )


def test_services_match() -> None:
    res = parse_resource(
        gnp(egress=[{"action": "Allow", "destination": {"services": {"name": "api", "namespace": "prod"}}}])
    )
    assert res.spec.egress[0].destination.services is not None
    with pytest.raises(ResourceError, match="together with services"):
        parse_resource(
            gnp(
                egress=[
                    {
                        "action": "Allow",
                        "destination": {"services": {"name": "a", "namespace": "b"}, "selector": "x == 'y'"},
                    }
                ]
            )
        )
    with pytest.raises(ResourceError, match="service match"):
        parse_resource(
            gnp(
                egress=[
                    {
                        "action": "Allow",
                        "protocol": "TCP",
                        "destination": {"services": {"name": "a", "namespace": "b"}, "ports": [80]},
                    }
                ]
            )
        )
    with pytest.raises(ResourceError, match="ingress rule's destination"):
        parse_resource(gnp(ingress=[{"action": "Allow", "destination": {"services": {"name": "a", "namespace": "b"}}}]))
    with pytest.raises(ResourceError, match="needs a namespace"):
        parse_resource(gnp(egress=[{"action": "Allow", "destination": {"services": {"name": "a"}}}]))


def test_http_match() -> None:
    r = rule(protocol="TCP", http={"methods": ["GET", "PUT"], "paths": [{"exact": "/a"}, {"prefix": "/b/"}]})
    assert r.http is not None and r.http.methods == ["GET", "PUT"]
    invalid({"action": "Allow", "http": {"methods": ["GET", "GET"]}}, ".http.methods", "duplicate")
    invalid({"action": "Allow", "http": {"paths": [{"exact": "/a", "prefix": "/b"}]}}, ".http.paths[0]", "only one")
    invalid({"action": "Allow", "http": {"paths": [{"exact": "a"}]}}, ".http.paths[0]", "must start with '/'")
    invalid({"action": "Allow", "protocol": "UDP", "http": {"methods": ["GET"]}}, ".protocol", "TCP")
    invalid({"action": "Deny", "http": {"methods": ["GET"]}}, ".http", "only valid in Allow rules")
    with pytest.raises(ResourceError, match="not allowed in egress"):
        parse_resource(gnp(egress=[{"action": "Allow", "http": {"methods": ["GET"]}}]))


def test_rule_metadata_annotations() -> None:
    r = rule(metadata={"annotations": {"from": "frontend"}})
    assert r.metadata is not None and r.metadata.annotations == {"from": "frontend"}
    invalid(
        {"action": "Allow", "metadata": {"annotations": {"bad key": "x"}}},
        ".metadata.annotations",
        "invalid annotation key",
    )


def test_rules_also_validated_in_namespaced_policy_and_profile() -> None:
    np = {
        "apiVersion": API,
        "kind": "NetworkPolicy",
        "metadata": {"name": "n", "namespace": "a"},
        "spec": {"egress": [{"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}}]},
    }
    assert isinstance(parse_resource(np), NetworkPolicy)
    prof = {"apiVersion": API, "kind": "Profile", "metadata": {"name": "p"}, "spec": {"ingress": [{"action": "Nope"}]}}
    with pytest.raises(ResourceError, match=r"spec.ingress\[0\].action"):
        parse_resource(prof)

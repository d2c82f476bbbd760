"""Shared field rules: names, labels, addresses, ports, protocols, interfaces, MACs, AS numbers,
durations. Each rule is exercised through a real resource so the error path is checked too."""

from __future__ import annotations

from typing import Any

import pytest

from calico.resources import ResourceError, parse_resource
from calico.resources.fields import duration_seconds, format_duration, parse_duration

API = "projectcalico.org/v3"


def doc(kind: str, spec: dict[str, Any] | None = None, name: str = "x", **meta: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"apiVersion": API, "kind": kind, "metadata": {"name": name, **meta}}
    if spec is not None:
        d["spec"] = spec
    return d


def invalid(data: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(data)
    found = [(p.field_path, p.message) for p in info.value.problems]
    assert any(p == path and fragment in m for p, m in found), found


def gns(nets: list[Any]) -> dict[str, Any]:
    return doc("GlobalNetworkSet", {"nets": nets})


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "web-1", "my.ippool-1", "a" * 253, "1abc"])
def test_subdomain_names_accepted(name: str) -> None:
    assert parse_resource(doc("IPPool", {"cidr": "198.18.0.0/16"}, name=name)).name == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("Web", "lower case"),
        ("-a", "start and end"),
        ("a_b", "lower case"),
        ("a..b", "lower case"),
        ("a" * 254, "limit is 253"),
        ("", "must not be empty"),
    ],
)
def test_bad_names_rejected(name: str, fragment: str) -> None:
    invalid(doc("IPPool", {"cidr": "198.18.0.0/16"}, name=name), "metadata.name", fragment)


def test_name_is_required_and_a_string() -> None:
    invalid({"apiVersion": API, "kind": "Profile", "metadata": {}}, "metadata.name", "required field missing")
    invalid({"apiVersion": API, "kind": "Profile", "metadata": {"name": 5}}, "metadata.name", "must be a string")


def test_namespace_is_a_dns_label() -> None:
    ok = parse_resource(doc("NetworkSet", {}, namespace="prod-1"))
    assert ok.namespace == "prod-1"
    invalid(doc("NetworkSet", {}, namespace="prod.1"), "metadata.namespace", "invalid namespace")
    invalid(doc("NetworkSet", {}, namespace="n" * 64), "metadata.namespace", "limit is 63")


def test_empty_namespace_counts_as_unset() -> None:
    assert parse_resource(doc("NetworkSet", {}, namespace="")).namespace is None
    assert parse_resource(doc("GlobalNetworkSet", {}, namespace="")).namespace is None


# --- labels and annotations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        {"app": "web"},
        {"example.com/role": "db", "a_b.c-d": ""},
        {"projectcalico.org/orchestrator": "k8s", "K": "V_1.x-y"},
        {"k" * 63: "v" * 63},
    ],
)
def test_valid_labels(labels: dict[str, str]) -> None:
    assert parse_resource(doc("Profile", {}, labels=labels)).metadata.labels == labels


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ({"bad key": "x"}, "invalid label key"),
        ({"-a": "x"}, "invalid label key"),
        ({"Example.com/a": "x"}, "prefix"),
        ({"/a": "x"}, "prefix"),
        ({"a/": "x"}, "must not be empty"),
        ({"k" * 64: "x"}, "at most 63"),
        ({"a": "v" * 64}, "at most 63"),
        ({"a": "bad value"}, "invalid value"),
        ({"a": "-x"}, "invalid value"),
        ({"a": 1}, "must be a string"),
        ({"a": True}, "must be a string"),
    ],
)
def test_invalid_labels(labels: dict[str, Any], fragment: str) -> None:
    invalid(doc("Profile", {}, labels=labels), "metadata.labels", fragment)


def test_annotations() -> None:
    ok = parse_resource(doc("Profile", {}, annotations={"example.com/Note": "any text at all!"}))
    assert ok.metadata.annotations == {"example.com/Note": "any text at all!"}
    invalid(doc("Profile", {}, annotations={"bad key": "x"}), "metadata.annotations", "invalid annotation key")
    invalid(doc("Profile", {}, annotations={"a": "x" * 300_000}), "metadata.annotations", "limit")


# --- CIDRs and addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("198.18.0.0/15", "198.18.0.0/15"),
        ("198.19.255.1/15", "198.18.0.0/15"),
        ("198.18.7.9", "198.18.7.9/32"),
        ("fd00::/8", "fd00::/8"),
        ("FD00:0:0:0::1/64", "fd00::/64"),
        ("fd00::1", "fd00::1/128"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_cidrs_are_canonicalised(given: str, canonical: str) -> None:
    assert parse_resource(gns([given])).spec.nets == [canonical]


@pytest.mark.parametrize(
    "bad",
    [
        "198.18.0.0/33",
        "198.18.0/24",
        "fd00::/129",
        "nonsense",
        "198.18.0.0/255.255.0.0",
        "fe80::1%eth0",
        " 198.18.0.1",
        "",
    ],
)
def test_invalid_cidrs(bad: str) -> None:
    invalid(gns([bad]), "spec.nets[0]", "invalid CIDR")


def test_cidr_must_be_a_string() -> None:
    invalid(gns([3]), "spec.nets[0]", "must be a string")


# --- ports, protocols ----------------------------------------------------------------------------------


def rule_with_ports(ports: list[Any], protocol: Any = "TCP") -> dict[str, Any]:
    return doc(
        "GlobalNetworkPolicy", {"ingress": [{"action": "Allow", "protocol": protocol, "destination": {"ports": ports}}]}
    )


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (80, 80),
        ("443", 443),
        ("6040:6050", "6040:6050"),
        ("80:80", 80),
        ("http", "http"),
        ("web-api2", "web-api2"),
        (65535, 65535),
    ],
)
def test_rule_ports(given: Any, canonical: Any) -> None:
    res = parse_resource(rule_with_ports([given]))
    assert res.spec.ingress[0].destination.ports == [canonical]


@pytest.mark.parametrize(
    ("port", "fragment"),
    [
        (0, "between 1 and 65535"),
        (65536, "between 1 and 65535"),
        ("90:80", "min > max"),
        ("1:70000", "between 1 and 65535"),
        ("a:b", "invalid port range"),
        ("123", None),
        ("Http", "invalid port"),
        ("web--api", "invalid port"),
        ("-web", "invalid port"),
        ("1234", None),
        ("averyveryverylongname", "invalid port"),
        (True, "invalid port"),
        (1.5, "invalid port"),
    ],
)
def test_invalid_rule_ports(port: Any, fragment: str | None) -> None:
    if fragment is None:  # numeric strings are numbers, not names
        parse_resource(rule_with_ports([port]))
        return
    invalid(rule_with_ports([port]), "spec.ingress[0].destination.ports[0]", fragment)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("TCP", "TCP"),
        ("tcp", "TCP"),
        ("udp", "UDP"),
        ("ICMPv6", "ICMPv6"),
        ("icmpv6", "ICMPv6"),
        ("SCTP", "SCTP"),
        ("udplite", "UDPLite"),
        (17, 17),
        ("132", 132),
        (255, 255),
        (1, 1),
    ],
)
def test_protocols(given: Any, canonical: Any) -> None:
    res = parse_resource(doc("GlobalNetworkPolicy", {"egress": [{"action": "Deny", "protocol": given}]}))
    assert res.spec.egress[0].protocol == canonical


@pytest.mark.parametrize(
    ("bad", "fragment"), [(0, "1-255"), (256, "1-255"), ("GRE", "invalid protocol"), (True, "invalid")]
)
def test_invalid_protocols(bad: Any, fragment: str) -> None:
    data = doc("GlobalNetworkPolicy", {"egress": [{"action": "Deny", "notProtocol": bad}]})
    invalid(data, "spec.egress[0].notProtocol", fragment)


# --- interfaces and MACs --------------------------------------------------------------------------------


def wep(**spec: Any) -> dict[str, Any]:
    return doc("WorkloadEndpoint", {"interfaceName": "cali1234", **spec}, namespace="default")


@pytest.mark.parametrize("ifname", ["cali0ef24ba", "eth0", "a", "x" * 15, "tap-1.2_3@x"])
def test_interface_names(ifname: str) -> None:
    assert parse_resource(wep(interfaceName=ifname)).spec.interfaceName == ifname


@pytest.mark.parametrize("ifname", ["", "x" * 16, "a/b", "a b", "a:b", ".", "..", "tab\tx"])
def test_invalid_interface_names(ifname: str) -> None:
    invalid(wep(interfaceName=ifname), "spec.interfaceName", "invalid interface name")


@pytest.mark.parametrize(
    ("mac", "canonical"),
    [
        ("ca:fe:1d:52:bb:e9", "ca:fe:1d:52:bb:e9"),
        ("CA-FE-1D-52-BB-E9", "ca:fe:1d:52:bb:e9"),
        ("cafe.1d52.bbe9", "ca:fe:1d:52:bb:e9"),
    ],
)
def test_macs(mac: str, canonical: str) -> None:
    assert parse_resource(wep(mac=mac)).spec.mac == canonical


@pytest.mark.parametrize("mac", ["ca:fe:1d:52:bb", "ca:fe-1d:52:bb:e9", "zz:fe:1d:52:bb:e9", "cafe1d52bbe9"])
def test_invalid_macs(mac: str) -> None:
    invalid(wep(mac=mac), "spec.mac", "invalid MAC")


# --- AS numbers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "value"), [(64512, 64512), ("64512", 64512), ("1.10", 65546), (0, 0), (4294967295, 4294967295)]
)
def test_as_numbers(given: Any, value: int) -> None:
    assert parse_resource(doc("BGPPeer", {"peerIP": "198.18.0.1", "asNumber": given})).spec.asNumber == value


@pytest.mark.parametrize("bad", [-1, 4294967296, "1.65536", "a.b", 1.5, True, "1.2.3"])
def test_invalid_as_numbers(bad: Any) -> None:
    invalid(doc("BGPPeer", {"peerIP": "198.18.0.1", "asNumber": bad}), "spec.asNumber", "invalid AS number")


# --- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical", "seconds"),
    [
        ("90s", "1m30s", 90.0),
        ("1m30s", "1m30s", 90.0),
        ("1h", "1h0m0s", 3600.0),
        ("500ms", "500ms", 0.5),
        ("1.5s", "1.5s", 1.5),
        ("0", "0s", 0.0),
        ("2h45m", "2h45m0s", 9900.0),
        ("10us", "10\u00b5s", 1e-5),
    ],
)
def test_durations(given: str, canonical: str, seconds: float) -> None:
    res = parse_resource(doc("FelixConfiguration", {"reportingInterval": given}, name="default"))
    assert res.spec.reportingInterval == canonical
    assert duration_seconds(canonical) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["90", "1x", "-5s", "", "s", "1.s.", 90, "1h 2m"])
def test_invalid_durations(bad: Any) -> None:
    data = doc("FelixConfiguration", {"reportingInterval": bad}, name="default")
    invalid(data, "spec.reportingInterval", "duration")


def test_duration_round_trip_matches_go_formatting() -> None:
    for ns in (1, 999, 1_500, 2_000_000, 999_999_999, 1_000_000_000, 61_000_000_000, 3_723_000_000_001):
        assert parse_duration(format_duration(ns)) == ns

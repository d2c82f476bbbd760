"""WorkloadEndpoint and HostEndpoint validation, and the workload endpoint parse speed agents need."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from calico.resources import HostEndpoint, ResourceError, WorkloadEndpoint, parse_resource

API = "projectcalico.org/v3"

WEP: dict[str, Any] = {
    "apiVersion": API,
    "kind": "WorkloadEndpoint",
    "metadata": {
        "name": "node1-k8s-my--nginx--b1337a-eth0",
        "namespace": "default",
        "labels": {"app": "frontend", "projectcalico.org/namespace": "default"},
    },
    "spec": {
        "node": "node1",
        "orchestrator": "k8s",
        "workload": "",
        "containerID": "1337495556942031415926535",
        "pod": "my-nginx-b1337a",
        "endpoint": "eth0",
        "serviceAccountName": "default",
        "interfaceName": "cali0ef24ba",
        "mac": "ca:fe:1d:52:bb:e9",
        "ipNetworks": ["198.18.0.5/32", "fd00::5"],
        "ipNATs": [{"internalIP": "198.18.0.5", "externalIP": "198.19.0.5"}],
        "ipv4Gateway": "198.18.0.1",
        "ipv6Gateway": "fd00::1",
        "profiles": ["kns.default", "ksa.default.default"],
        "ports": [
            {"name": "some-port", "port": 1234, "protocol": "TCP"},
            {"name": "another-port", "port": 5432, "protocol": "UDP", "hostPort": 15432, "hostIP": "198.18.0.9"},
        ],
        "allowSpoofedSourcePrefixes": ["198.20.0.1/24"],
    },
}


def wep(**spec: Any) -> dict[str, Any]:
    d = copy.deepcopy(WEP)
    d["spec"].update(spec)
    return d


def invalid(data: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ResourceError) as info:
        parse_resource(data)
    found = [(p.field_path, p.message) for p in info.value.problems]
    assert any(p == path and fragment in m for p, m in found), found


def test_workload_endpoint() -> None:
    res = parse_resource(WEP)
    assert isinstance(res, WorkloadEndpoint)
    assert res.spec.ipNetworks == ["198.18.0.5/32", "fd00::5/128"]
    assert res.spec.allowSpoofedSourcePrefixes == ["198.20.0.0/24"]
    assert res.spec.ports is not None and res.spec.ports[1].hostPort == 15432
    assert res.namespace == "default" and res.NAMESPACED


def test_interface_name_required() -> None:
    d = copy.deepcopy(WEP)
    del d["spec"]["interfaceName"]
    invalid(d, "spec.interfaceName", "required field missing")


def test_spec_required() -> None:
    d = copy.deepcopy(WEP)
    del d["spec"]
    invalid(d, "spec", "required field missing")


@pytest.mark.parametrize("net", ["198.18.0.0/24", "fd00::/64", "198.18.0.5/31"])
def test_ip_networks_must_be_single_addresses(net: str) -> None:
    invalid(wep(ipNetworks=[net]), "spec.ipNetworks[0]", "contains multiple addresses")


def test_ip_networks_must_parse() -> None:
    invalid(wep(ipNetworks=["198.18.0.300"]), "spec.ipNetworks[0]", "invalid IP network")


def test_gateways_must_match_family() -> None:
    invalid(wep(ipv4Gateway="fd00::1"), "spec.ipv4Gateway", "not an IPv4 address")
    invalid(wep(ipv6Gateway="198.18.0.1"), "spec.ipv6Gateway", "not an IPv6 address")


def test_ip_nats() -> None:
    invalid(
        wep(ipNATs=[{"internalIP": "198.18.0.6", "externalIP": "198.19.0.5"}]),
        "spec.ipNATs[0].internalIP",
        "not one of",
    )
    invalid(
        wep(ipNATs=[{"internalIP": "198.18.0.5", "externalIP": "fd00::9"}]),
        "spec.ipNATs[0].externalIP",
        "same IP version",
    )


def test_container_id() -> None:
    invalid(wep(containerID="-abc"), "spec.containerID", "invalid containerID")


def test_endpoint_ports() -> None:
    invalid(
        wep(ports=[{"name": "x", "port": 1, "protocol": "ICMP"}]), "spec.ports[0].protocol", "does not support ports"
    )
    invalid(wep(ports=[{"name": "Bad_Name", "port": 1, "protocol": "TCP"}]), "spec.ports[0].name", "invalid port name")
    invalid(wep(ports=[{"port": 1, "protocol": "TCP"}]), "spec.ports[0].name", "needs a name")
    invalid(wep(ports=[{"name": "x", "port": 0, "protocol": "TCP"}]), "spec.ports[0].port", "1 and 65535")
    ok = parse_resource(wep(ports=[{"port": 80, "protocol": "tcp", "hostPort": 8080}]))
    assert ok.spec.ports is not None and ok.spec.ports[0].protocol == "TCP"


def test_profiles_are_names() -> None:
    invalid(wep(profiles=["Bad Profile"]), "spec.profiles[0]", "invalid name")


def test_workload_endpoint_parse_is_fast() -> None:
    docs = []
    for i in range(2000):
        d = wep(interfaceName=f"cali{i:011d}", ipNetworks=[f"198.18.{i // 256}.{i % 256}/32"], ipNATs=None)
        d["spec"].pop("ipNATs")
        d["metadata"]["name"] = f"node1-k8s-pod{i}-eth0"
        docs.append(d)
    start = time.perf_counter()
    for d in docs:
        parse_resource(d)
    per_item = (time.perf_counter() - start) / len(docs)
    assert per_item < 1e-3, f"{per_item * 1e6:.0f} us per WorkloadEndpoint"


# --- HostEndpoint -----------------------------------------------------------------------------------


def hep(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "HostEndpoint",
        "metadata": {"name": "h1", "labels": {"type": "production"}},
        "spec": spec,
    }


def test_host_endpoint() -> None:
    res = parse_resource(
        hep(
            {
                "node": "myhost",
                "interfaceName": "eth0",
                "expectedIPs": ["198.18.0.1", "FD00::1"],
                "profiles": ["profile1"],
                "ports": [{"name": "some-port", "port": 1234, "protocol": "TCP"}],
            }
        )
    )
    assert isinstance(res, HostEndpoint) and res.spec.expectedIPs == ["198.18.0.1", "fd00::1"]
    assert parse_resource(hep({"node": "myhost", "interfaceName": "*"})).spec.interfaceName == "*"
    assert parse_resource(hep({"node": "myhost", "expectedIPs": ["198.18.0.1"]})).spec.interfaceName is None


def test_invalid_host_endpoint() -> None:
    invalid(hep({"node": "myhost"}), "spec.interfaceName", "needs an interfaceName or expectedIPs")
    invalid(hep({"interfaceName": "eth0"}), "spec.node", "required field missing")
    invalid(hep({"node": "myhost", "interfaceName": "eth0/1"}), "spec.interfaceName", "invalid interface name")
    invalid(hep({"node": "myhost", "expectedIPs": ["198.18.0.0/24"]}), "spec.expectedIPs[0]", "invalid IP address")
    invalid(
        hep({"node": "myhost", "interfaceName": "eth0", "ports": [{"name": "p", "port": 1, "protocol": "UDPLite"}]}),
        "spec.ports[0].protocol",
        "does not support ports",
    )
    invalid(
        {**hep({"node": "h", "interfaceName": "eth0"}), "metadata": {"name": "h1", "namespace": "x"}},
        "metadata.namespace",
        "not namespaced",
    )

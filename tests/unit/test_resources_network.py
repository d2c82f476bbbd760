"""IPPool, network sets, BGP configuration and peers, Node, FelixConfiguration, ClusterInformation
and Profile: defaults filled in, and each validation rule accepted and refused."""

from __future__ import annotations

from typing import Any

import pytest

from calico.resources import (
    BGPConfiguration,
    BGPPeer,
    ClusterInformation,
    FelixConfiguration,
    IPPool,
    Node,
    Profile,
    ResourceError,
    ippool_overlaps,
    parse_resource,
)

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


# --- IPPool ------------------------------------------------------------------------------------------------


def pool(**spec: Any) -> dict[str, Any]:
    return doc("IPPool", {"cidr": "198.18.0.0/16", **spec}, name="pool1")


def test_ippool_defaults_v4() -> None:
    res = parse_resource(pool())
    assert isinstance(res, IPPool)
    assert res.to_dict()["spec"] == {
        "cidr": "198.18.0.0/16",
        "blockSize": 26,
        "ipipMode": "Never",
        "vxlanMode": "Never",
        "natOutgoing": False,
        "nodeSelector": "all()",
        "allowedUses": ["Workload", "Tunnel"],
    }


def test_ippool_defaults_v6() -> None:
    res = parse_resource(doc("IPPool", {"cidr": "FD00:1234::1/112"}))
    assert res.spec.cidr == "fd00:1234::/112" and res.spec.blockSize == 122


def test_ippool_cidr() -> None:
    assert parse_resource(pool(cidr="198.18.5.5/16")).spec.cidr == "198.18.0.0/16"
    invalid(doc("IPPool", {}), "spec.cidr", "required field missing")
    invalid(doc("IPPool"), "spec", "required field missing")
    invalid(pool(cidr="198.18.0.0/33"), "spec.cidr", "invalid CIDR")
    invalid(pool(cidr="169.254.0.0/16"), "spec.cidr", "link-local")
    invalid(pool(cidr="fe80::/64"), "spec.cidr", "link-local")


@pytest.mark.parametrize(
    ("cidr", "size"), [("198.18.0.0/16", 20), ("198.18.0.0/16", 32), ("fd00::/64", 116), ("fd00::/64", 128)]
)
def test_block_sizes(cidr: str, size: int) -> None:
    assert parse_resource(pool(cidr=cidr, blockSize=size)).spec.blockSize == size


@pytest.mark.parametrize(
    ("cidr", "size"), [("198.18.0.0/16", 19), ("198.18.0.0/16", 33), ("fd00::/64", 115), ("fd00::/64", 26)]
)
def test_invalid_block_sizes(cidr: str, size: int) -> None:
    invalid(pool(cidr=cidr, blockSize=size), "spec.blockSize", "out of range")


def test_pool_must_hold_a_block() -> None:
    invalid(pool(cidr="198.18.0.0/27"), "spec.cidr", "smaller than one block")
    assert parse_resource(pool(cidr="198.18.0.0/27", blockSize=28)).spec.blockSize == 28
    assert parse_resource(pool(cidr="198.18.0.0/27", disabled=True)).spec.disabled


def test_encapsulation_modes() -> None:
    assert parse_resource(pool(ipipMode="CrossSubnet")).spec.ipipMode == "CrossSubnet"
    assert parse_resource(pool(vxlanMode="Always")).spec.vxlanMode == "Always"
    assert parse_resource(pool(cidr="fd00::/64", vxlanMode="Always")).spec.vxlanMode == "Always"
    invalid(pool(ipipMode="Always", vxlanMode="CrossSubnet"), "spec.vxlanMode", "cannot both be enabled")
    invalid(pool(cidr="fd00::/64", ipipMode="Always"), "spec.ipipMode", "IPv6")
    invalid(pool(ipipMode="always"), "spec.ipipMode", "must be 'Never', 'Always' or 'CrossSubnet'")


def test_pool_flags_and_selector() -> None:
    res = parse_resource(pool(natOutgoing=True, disabled=True, disableBGPExport=True, nodeSelector="zone=='a'"))
    assert res.spec.natOutgoing and res.spec.disableBGPExport and res.spec.nodeSelector == 'zone == "a"'
    invalid(pool(natOutgoing="true"), "spec.natOutgoing", "true or false")
    invalid(pool(nodeSelector="zone =="), "spec.nodeSelector", "invalid selector")


def test_allowed_uses() -> None:
    assert parse_resource(pool(allowedUses=["Tunnel"])).spec.allowedUses == ["Tunnel"]
    invalid(pool(allowedUses=["Workload", "Workload"]), "spec.allowedUses[1]", "more than once")
    invalid(pool(allowedUses=["Everything"]), "spec.allowedUses[0]", "must be 'Workload' or 'Tunnel'")


def test_ippool_overlaps() -> None:
    a = parse_resource(pool(cidr="198.18.0.0/16"))
    b = parse_resource(doc("IPPool", {"cidr": "198.18.128.0/24"}, name="b"))
    assert isinstance(a, IPPool) and isinstance(b, IPPool)
    assert ippool_overlaps(a, b) and ippool_overlaps(b.spec, "198.18.0.0/15")
    assert not ippool_overlaps(a, "198.19.0.0/16")
    assert not ippool_overlaps("198.18.0.0/15", "fd00::/8")


# --- network sets --------------------------------------------------------------------------------------------


def test_network_sets() -> None:
    ns = parse_resource(doc("NetworkSet", {"nets": ["198.18.28.1/24"]}, namespace="staging", labels={"role": "db"}))
    assert ns.spec.nets == ["198.18.28.0/24"] and ns.NAMESPACED
    g = parse_resource(
        doc("GlobalNetworkSet", {"nets": ["fd00:10::/64"], "allowedEgressDomains": ["*.example.com", "db.example.org"]})
    )
    assert g.spec.allowedEgressDomains == ["*.example.com", "db.example.org"]


def test_invalid_network_sets() -> None:
    invalid(doc("GlobalNetworkSet", {"nets": ["nope"]}), "spec.nets[0]", "invalid CIDR")
    invalid(
        doc("GlobalNetworkSet", {"allowedEgressDomains": ["bad domain"]}),
        "spec.allowedEgressDomains[0]",
        "invalid domain",
    )
    invalid(
        doc("GlobalNetworkSet", {}, labels={"projectcalico.org/namespace": "x"}),
        'metadata.labels["projectcalico.org/namespace"]',
        "reserved",
    )


# --- BGP ---------------------------------------------------------------------------------------------------------


def test_default_bgp_configuration_defaults() -> None:
    res = parse_resource(doc("BGPConfiguration", {}, name="default"))
    assert isinstance(res, BGPConfiguration)
    assert (res.spec.nodeToNodeMeshEnabled, res.spec.asNumber, res.spec.listenPort) == (True, 64512, 179)
    node_specific = parse_resource(doc("BGPConfiguration", {"logSeverityScreen": "Debug"}, name="node.node1"))
    assert node_specific.spec.asNumber is None and node_specific.spec.nodeToNodeMeshEnabled is None


def test_bgp_configuration_fields() -> None:
    spec = {
        "logSeverityScreen": "Info",
        "nodeToNodeMeshEnabled": False,
        "asNumber": "1.2",
        "serviceClusterIPs": [{"cidr": "198.18.96.1/20"}],
        "serviceExternalIPs": [{"cidr": "fd00:96::/112"}],
        "serviceLoadBalancerIPs": [{"cidr": "198.19.0.0/24"}],
        "listenPort": 178,
        "communities": [{"name": "c1", "value": "63400:300:100"}],
        "prefixAdvertisements": [{"cidr": "198.18.5.0/24", "communities": ["c1", "63400:120"]}],
        "bindMode": "NodeIP",
        "ignoredInterfaces": ["docker*"],
    }
    res = parse_resource(doc("BGPConfiguration", spec, name="default"))
    assert res.spec.asNumber == 65538 and res.spec.serviceClusterIPs[0].cidr == "198.18.96.0/20"


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"logSeverityScreen": "info"}, "spec.logSeverityScreen", "must be"),
        ({"listenPort": 0}, "spec.listenPort", "1 and 65535"),
        ({"listenPort": 70000}, "spec.listenPort", "1 and 65535"),
        ({"serviceClusterIPs": [{"cidr": "x"}]}, "spec.serviceClusterIPs[0].cidr", "invalid CIDR"),
        ({"communities": [{"name": "c", "value": "1:2"}]}, "spec.communities", "not used"),
        (
            {
                "communities": [{"name": "c", "value": "70000:1"}],
                "prefixAdvertisements": [{"cidr": "198.18.0.0/24", "communities": ["c"]}],
            },
            "spec.communities[0].value",
            "0-65535",
        ),
        (
            {"prefixAdvertisements": [{"cidr": "198.18.0.0/24", "communities": ["undefined"]}]},
            "spec.prefixAdvertisements[0].communities[0]",
            "neither",
        ),
        (
            {"nodeToNodeMeshEnabled": False, "nodeMeshMaxRestartTime": "120s"},
            "spec.nodeMeshMaxRestartTime",
            "cannot be set",
        ),
        (
            {"nodeToNodeMeshEnabled": False, "nodeMeshPassword": {"secretKeyRef": {"name": "s", "key": "k"}}},
            "spec.nodeMeshPassword",
            "cannot be set",
        ),
        ({"ignoredInterfaces": ["*"]}, "spec.ignoredInterfaces[0]", "invalid interface name"),
        ({"asNumber": 1.2}, "spec.asNumber", "invalid AS number"),
    ],
)
def test_invalid_bgp_configuration(spec: dict[str, Any], path: str, fragment: str) -> None:
    invalid(doc("BGPConfiguration", spec, name="default"), path, fragment)


@pytest.mark.parametrize(
    ("peer_ip", "canonical"),
    [
        ("198.18.0.1", "198.18.0.1"),
        ("198.18.0.1:1790", "198.18.0.1:1790"),
        ("FD00::1", "fd00::1"),
        ("[fd00::1]:179", "[fd00::1]:179"),
    ],
)
def test_bgp_peer_ip(peer_ip: str, canonical: str) -> None:
    res = parse_resource(doc("BGPPeer", {"peerIP": peer_ip, "asNumber": 64567}))
    assert isinstance(res, BGPPeer) and res.spec.peerIP == canonical


@pytest.mark.parametrize(
    "peer_ip", ["198.18.0.1:0", "198.18.0.1:99999", "fd00::1:179x", "[198.18.0.1]:179", "[fd00::1]", "host:179"]
)
def test_invalid_bgp_peer_ip(peer_ip: str) -> None:
    invalid(doc("BGPPeer", {"peerIP": peer_ip}), "spec.peerIP", "peerIP")


def test_bgp_peer_fields() -> None:
    spec = {
        "nodeSelector": "rack == 'a'",
        "peerIP": "198.18.0.1",
        "asNumber": 64567,
        "keepOriginalNextHop": True,
        "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "rr-password"}},
        "sourceAddress": "None",
        "maxRestartTime": "120s",
        "keepaliveTime": "30s",
        "numAllowedLocalASNumbers": 2,
        "ttlSecurity": 1,
        "filters": ["filter-1"],
        "reachableBy": "198.18.0.254",
    }
    res = parse_resource(doc("BGPPeer", spec))
    assert res.spec.maxRestartTime == "2m0s" and res.spec.nodeSelector == 'rack == "a"'
    assert res.spec.keepaliveTime == "30s"
    assert parse_resource(doc("BGPPeer", {"peerSelector": "rr == 'true'"})).spec.peerSelector == 'rr == "true"'


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"node": "n1", "nodeSelector": "all()"}, "spec.node", "nodeSelector"),
        ({"peerIP": "198.18.0.1", "peerSelector": "all()"}, "spec.peerIP", "peerSelector"),
        ({"asNumber": 64512, "peerSelector": "all()"}, "spec.asNumber", "peerSelector"),
        ({"sourceAddress": "NodeIP"}, "spec.sourceAddress", "must be"),
        ({"ttlSecurity": 256}, "spec.ttlSecurity", "0-255"),
        ({"reachableBy": "198.18.0.1"}, "spec.reachableBy", "needs a peerIP"),
        ({"peerIP": "fd00::1", "reachableBy": "198.18.0.1"}, "spec.reachableBy", "same IP version"),
        ({"password": {"secretKeyRef": {"name": "s"}}}, "spec.password.secretKeyRef.key", "required"),
        ({"peerSelector": "rr =="}, "spec.peerSelector", "invalid selector"),
        ({"node": "Bad_Node"}, "spec.node", "invalid name"),
    ],
)
def test_invalid_bgp_peer(spec: dict[str, Any], path: str, fragment: str) -> None:
    invalid(doc("BGPPeer", spec), path, fragment)


# --- Node ----------------------------------------------------------------------------------------------------------


def test_node() -> None:
    spec = {
        "bgp": {
            "asNumber": 64512,
            "ipv4Address": "198.18.0.10/24",
            "ipv6Address": "FD00:1::10/64",
            "ipv4IPIPTunnelAddr": "198.18.250.1",
            "routeReflectorClusterID": "224.0.0.1",
        },
        "ipv4VXLANTunnelAddr": "198.18.251.1",
        "vxlanTunnelMACAddr": "66:CF:23:DF:22:07",
        "orchRefs": [{"nodeName": "node-hostname", "orchestrator": "k8s"}],
        "wireguard": {"interfaceIPv4Address": "198.18.252.1"},
        "addresses": [{"address": "198.18.0.10/24", "type": "InternalIP"}],
    }
    res = parse_resource(doc("Node", spec, name="node-hostname"))
    assert isinstance(res, Node) and res.spec.bgp is not None
    assert res.spec.bgp.ipv4Address == "198.18.0.10/24"  # host bits kept
    assert res.spec.bgp.ipv6Address == "fd00:1::10/64"
    assert res.spec.vxlanTunnelMACAddr == "66:cf:23:df:22:07"
    status = {"wireguardPublicKey": "jlkVyQYooZYzI2wFfNhSZez5eWh44yfq1wKVjLvSXgY=", "podCIDRs": ["198.18.1.0/24"]}
    assert parse_resource({**doc("Node", {}), "status": status}).status is not None


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({"bgp": {"ipv4Address": "fd00::1/64"}}, "spec.bgp.ipv4Address", "not an IPv4"),
        ({"bgp": {"ipv4Address": "198.18.0.300/24"}}, "spec.bgp.ipv4Address", "invalid address"),
        ({"bgp": {"routeReflectorClusterID": "1"}}, "spec.bgp.routeReflectorClusterID", "invalid IPv4"),
        ({"bgp": {}}, "spec.bgp", "must not be empty"),
        ({"vxlanTunnelMACAddr": "nope"}, "spec.vxlanTunnelMACAddr", "invalid MAC"),
        ({"orchRefs": [{"nodeName": "x"}]}, "spec.orchRefs[0].orchestrator", "required"),
        ({"addresses": [{"address": "198.18.0.1", "type": "Public"}]}, "spec.addresses[0].type", "must be"),
    ],
)
def test_invalid_node(spec: dict[str, Any], path: str, fragment: str) -> None:
    invalid(doc("Node", spec), path, fragment)


def test_invalid_node_status() -> None:
    invalid({**doc("Node", {}), "status": {"wireguardPublicKey": "short"}}, "status.wireguardPublicKey", "WireGuard")


# --- FelixConfiguration ----------------------------------------------------------------------------------------------


def test_felix_configuration() -> None:
    spec = {
        "logSeverityScreen": "Info",
        "reportingInterval": "30s",
        "iptablesRefreshInterval": "90s",
        "routeRefreshInterval": "1m30s",
        "ipsetsRefreshInterval": "10s",
        "defaultEndpointToHostAction": "Accept",
        "interfacePrefix": "cali,tap",
        "failsafeInboundHostPorts": [
            {"protocol": "tcp", "port": 22},
            {"protocol": "UDP", "port": 68, "net": "198.18.0.1/16"},
        ],
        "failsafeOutboundHostPorts": [],
        "healthEnabled": True,
        "healthHost": "localhost",
        "healthPort": 9099,
        "prometheusMetricsEnabled": True,
        "prometheusMetricsPort": 9091,
        "metadataAddr": "127.0.0.1",
        "metadataPort": 8775,
        "chainInsertMode": "Append",
        "ipv6Support": False,
        "logFilePath": "none",
        "logSeverityFile": "Warning",
        "iptablesBackend": "NFT",
        "bpfEnabled": False,
        "routeTableRange": {"min": 1, "max": 250},
        "removeExternalRoutes": True,
        "endpointReportingEnabled": False,
        "kubeNodePortRanges": [30000, "30000:32767"],
        "natPortRange": "32768:65535",
        "iptablesMarkMask": 0xFF000000,
        "wireguardEnabled": True,
        "wireguardInterfaceName": "wg.calico",
        "featureDetectOverride": "SNATFullyRandom=true,MASQFullyRandom=false,",
        "bpfDataIfacePattern": "^(en.*|eth.*)$",
        "vxlanVNI": 4096,
        "externalNodesList": ["198.18.0.0/16"],
    }
    res = parse_resource(doc("FelixConfiguration", spec, name="default"))
    assert isinstance(res, FelixConfiguration)
    assert res.spec.iptablesRefreshInterval == "1m30s" and res.spec.reportingInterval == "30s"
    assert res.spec.failsafeInboundHostPorts is not None
    assert res.spec.failsafeInboundHostPorts[0].protocol == "TCP"
    assert res.spec.failsafeInboundHostPorts[1].net == "198.18.0.0/16"
    assert len(FelixConfiguration.model_fields["spec"].annotation.model_fields) >= 30  # type: ignore[union-attr]
    assert parse_resource(doc("FelixConfiguration", None, name="node.n1")).spec.bpfEnabled is None


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            {"defaultEndpointToHostAction": "DROP"},
            "spec.defaultEndpointToHostAction",
            "must be 'Drop', 'Accept' or 'Return'",
        ),
        ({"logSeverityScreen": "Verbose"}, "spec.logSeverityScreen", "must be"),
        ({"reportingInterval": 30}, "spec.reportingInterval", "must be a string"),
        ({"healthPort": 0}, "spec.healthPort", "1 and 65535"),
        (
            {"failsafeInboundHostPorts": [{"protocol": "ICMP", "port": 1}]},
            "spec.failsafeInboundHostPorts[0].protocol",
            "TCP, UDP or SCTP",
        ),
        ({"failsafeInboundHostPorts": [{"protocol": "TCP"}]}, "spec.failsafeInboundHostPorts[0].port", "required"),
        (
            {"failsafeOutboundHostPorts": [{"protocol": "TCP", "port": 70000}]},
            "spec.failsafeOutboundHostPorts[0].port",
            "0-65535",
        ),
        ({"routeTableRange": {"min": 0, "max": 250}}, "spec.routeTableRange", "1..250"),
        ({"routeTableRange": {"min": 10, "max": 5}}, "spec.routeTableRange", "1..250"),
        (
            {"routeTableRange": {"min": 1, "max": 2}, "routeTableRanges": [{"min": 1, "max": 2}]},
            "spec.routeTableRange",
            "together",
        ),
        ({"kubeNodePortRanges": ["http"]}, "spec.kubeNodePortRanges[0]", "named ports"),
        ({"kubeNodePortRanges": [1, 2, 3, 4, 5, 6, 7, 8]}, "spec.kubeNodePortRanges", "at most 7"),
        ({"iptablesMarkMask": -1}, "spec.iptablesMarkMask", "0-4294967295"),
        ({"bpfDataIfacePattern": "("}, "spec.bpfDataIfacePattern", "invalid regular expression"),
        ({"featureDetectOverride": "a b"}, "spec.featureDetectOverride", "key=value"),
        ({"chainInsertMode": "Top"}, "spec.chainInsertMode", "must be 'Insert' or 'Append'"),
        ({"ipv6Support": "false"}, "spec.ipv6Support", "true or false"),
        ({"natOutgoingAddress": "fd00::1"}, "spec.natOutgoingAddress", "IPv4"),
        ({"externalNodesList": ["fd00::/64"]}, "spec.externalNodesList[0]", "IPv4"),
        ({"openstackRegion": "Region1"}, "spec.openstackRegion", "invalid openstackRegion"),
        ({"wireguardInterfaceName": "wg/0"}, "spec.wireguardInterfaceName", "invalid interface name"),
        ({"madeUpSetting": True}, "spec.madeUpSetting", "unknown field"),
    ],
)
def test_invalid_felix_configuration(spec: dict[str, Any], path: str, fragment: str) -> None:
    invalid(doc("FelixConfiguration", spec, name="default"), path, fragment)


# --- ClusterInformation, Profile ------------------------------------------------------------------------------------


def test_cluster_information() -> None:
    spec = {"clusterGUID": "abc", "clusterType": "k8s,bgp", "calicoVersion": "v3.27.0", "datastoreReady": True}
    res = parse_resource(doc("ClusterInformation", spec, name="default"))
    assert isinstance(res, ClusterInformation) and res.spec.datastoreReady is True
    invalid(
        doc("ClusterInformation", {"datastoreReady": "yes"}, name="default"), "spec.datastoreReady", "true or false"
    )
    invalid(doc("ClusterInformation", {"clusterGUID": 5}, name="default"), "spec.clusterGUID", "must be a string")


def test_profile() -> None:
    res = parse_resource(doc("Profile", {"ingress": [{"action": "Allow"}], "labelsToApply": {"stage": "dev"}}))
    assert isinstance(res, Profile) and res.spec.labelsToApply == {"stage": "dev"}
    assert parse_resource(doc("Profile")).spec.ingress is None
    invalid(doc("Profile", {"labelsToApply": {"bad key": "x"}}), "spec.labelsToApply", "invalid label key")

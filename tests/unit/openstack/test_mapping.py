"""The pure OpenStack mapping: ports → endpoints, security groups → policies; every document validates."""

from __future__ import annotations

import pytest

from calico.openstack import names, ports, secgroups
from calico.resources import parse_resource

PORT = {
    "id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789", "device_id": "vm-1", "device_owner": "compute:nova",
    "binding:host_id": "h1", "network_id": "net-1", "project_id": "proj1", "mac_address": "FA:16:3E:00:00:01",
    "admin_state_up": True, "port_security_enabled": True, "security_groups": ["sg-a", "sg-b"],
    "fixed_ips": [{"subnet_id": "s4", "ip_address": "198.18.5.7"}, {"subnet_id": "s6", "ip_address": "fd00:5::7"}],
    "allowed_address_pairs": [],
}


def rule(**kw):
    return {"id": "r", "direction": "ingress", "ethertype": "IPv4", "protocol": None, "port_range_min": None,
            "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": None, **kw}


def test_endpoint_of_a_vm_port_validates_and_carries_names_labels_and_addresses():
    ctx = ports.PortContext(subnets={"s4": {"gateway_ip": "198.18.5.1"}, "s6": {"gateway_ip": "fd00:5::1"}},
                            network={"name": "net one"}, project_name="demo")
    doc = ports.endpoint(PORT, ctx)
    res = parse_resource(doc)
    assert res.metadata.name == "h1-openstack-vm--1-0a1b2c3d--4e5f--6789--abcd--ef0123456789"
    assert res.metadata.namespace == "openstack"
    spec = doc["spec"]
    assert spec["interfaceName"] == "tap0a1b2c3d-4e"
    assert spec["ipNetworks"] == ["198.18.5.7/32", "fd00:5::7/128"]
    assert spec["mac"] == "fa:16:3e:00:00:01"
    assert (spec["ipv4Gateway"], spec["ipv6Gateway"]) == ("198.18.5.1", "fd00:5::1")
    labels = doc["metadata"]["labels"]
    assert labels[names.sg_label("sg-a")] == "" and labels[names.sg_label("sg-b")] == ""
    assert labels[names.NETWORK_NAME_LABEL] == "net_one" and labels[names.PROJECT_NAME_LABEL] == "demo"
    assert spec["profiles"] == [] and "allowSpoofedSourcePrefixes" not in spec


@pytest.mark.parametrize("change", [{"admin_state_up": False}, {"security_groups": []}])
def test_admin_down_or_no_group_leaves_no_policy_and_no_profile(change):
    doc = ports.endpoint({**PORT, **change})
    assert not any(k.startswith(names.SG_LABEL_PREFIX) for k in doc["metadata"]["labels"])
    assert doc["spec"]["profiles"] == []


def test_port_security_off_allows_everything_and_any_source():
    doc = ports.endpoint({**PORT, "port_security_enabled": False, "security_groups": []})
    parse_resource(doc)
    assert doc["spec"]["profiles"] == [names.NO_PORT_SECURITY_PROFILE]
    assert doc["spec"]["allowSpoofedSourcePrefixes"] == ["0.0.0.0/0", "::/0"]
    parse_resource(ports.no_port_security_profile())


def test_allowed_address_pairs_pass_anti_spoofing_and_join_the_groups():
    port = {**PORT, "allowed_address_pairs": [{"ip_address": "198.18.9.0/24"}, {"ip_address": "198.18.5.99"}]}
    doc = ports.endpoint(port)
    assert doc["spec"]["allowSpoofedSourcePrefixes"] == ["198.18.5.99/32", "198.18.9.0/24"]
    netset = ports.pair_set(port)
    assert netset is not None
    parse_resource(netset)
    assert netset["metadata"]["labels"] == {names.sg_label("sg-a"): "", names.sg_label("sg-b"): ""}
    assert ports.pair_set(PORT) is None
    assert ports.pair_set({**port, "security_groups": []}) is None


def test_floating_ips_become_ip_nats_of_their_fixed_address():
    fips = [{"fixed_ip_address": "198.18.5.7", "floating_ip_address": "198.19.200.4"},
            {"fixed_ip_address": "198.18.77.7", "floating_ip_address": "198.19.200.5"}]
    doc = ports.endpoint(PORT, ports.PortContext(floating_ips=fips))
    parse_resource(doc)
    assert doc["spec"]["ipNATs"] == [{"internalIP": "198.18.5.7", "externalIP": "198.19.200.4"}]


def test_unbound_port_is_refused_by_name():
    with pytest.raises(ValueError, match=PORT["id"]):
        ports.endpoint({**PORT, "binding:host_id": ""})


@pytest.mark.parametrize(("neutron", "ethertype", "calico"), [
    ("tcp", "IPv4", "TCP"), ("6", "IPv4", "TCP"), ("udp", "IPv6", "UDP"), ("icmp", "IPv4", "ICMP"),
    ("icmp", "IPv6", "ICMPv6"), ("ipv6-icmp", "IPv6", "ICMPv6"), ("icmpv6", "IPv6", "ICMPv6"), ("1", "IPv6", "ICMPv6"),
    ("gre", "IPv4", 47), ("112", "IPv4", 112), (None, "IPv4", None), ("any", "IPv6", None), ("sctp", "IPv4", "SCTP"),
])
def test_protocols_by_name_and_number(neutron, ethertype, calico):
    assert secgroups.protocol(neutron, ethertype) == calico


@pytest.mark.parametrize("bad", ["bogus", "256", "-3"])
def test_unknown_protocol_is_an_error(bad):
    with pytest.raises(secgroups.RuleError, match="protocol"):
        secgroups.protocol(bad, "IPv4")


def test_ingress_rule_with_port_range_and_prefix():
    out = secgroups.rule(rule(protocol="tcp", port_range_min=80, port_range_max=90, remote_ip_prefix="198.18.0.0/16"))
    assert out == {"action": "Allow", "ipVersion": 4, "protocol": "TCP",
                   "source": {"nets": ["198.18.0.0/16"]}, "destination": {"ports": ["80:90"]}}


def test_egress_rule_puts_remote_group_on_the_destination():
    out = secgroups.rule(rule(direction="egress", ethertype="IPv6", protocol="udp", port_range_min=53,
                              port_range_max=53, remote_group_id="sg-x"))
    assert out == {"action": "Allow", "ipVersion": 6, "protocol": "UDP",
                   "destination": {"ports": [53], "selector": "has(sg.projectcalico.org/openstack-sg-x)"}}


def test_icmp_type_and_code_come_from_the_port_range_fields():
    assert secgroups.rule(rule(protocol="icmp", port_range_min=8, port_range_max=0))["icmp"] == {"type": 8, "code": 0}
    assert secgroups.rule(rule(protocol="icmp", port_range_min=8))["icmp"] == {"type": 8}
    assert "icmp" not in secgroups.rule(rule(protocol="icmp"))


def test_port_range_on_a_portless_protocol_is_an_error():
    with pytest.raises(secgroups.RuleError, match="port range"):
        secgroups.rule(rule(protocol="gre", port_range_min=1, port_range_max=2))


def test_address_group_with_no_address_of_the_family_matches_nothing():
    groups = secgroups.AddressGroups({"ag": ["198.18.1.0/24", "fd00:9::/64"]})
    v4 = secgroups.rule(rule(remote_address_group_id="ag"), groups)
    assert v4["source"] == {"nets": ["198.18.1.0/24"]}
    assert secgroups.rule(rule(remote_address_group_id="ag", ethertype="IPv6"), groups)["source"] == {
        "nets": ["fd00:9::/64"]}
    only6 = secgroups.AddressGroups({"ag": ["fd00:9::/64"]})
    assert secgroups.rule(rule(remote_address_group_id="ag"), only6) is None
    assert secgroups.rule(rule(remote_address_group_id="missing"), groups) is None


def test_default_group_policy_validates():
    sg = {"id": "sg-d", "security_group_rules": [
        rule(id="1", direction="egress"), rule(id="2", direction="egress", ethertype="IPv6"),
        rule(id="3", remote_group_id="sg-d"), rule(id="4", ethertype="IPv6", remote_group_id="sg-d")]}
    doc = secgroups.policy(sg)
    res = parse_resource(doc)
    assert res.metadata.name == "ossg.default.sg-d" and res.metadata.namespace == "openstack"
    assert doc["spec"]["selector"] == "has(sg.projectcalico.org/openstack-sg-d)"
    assert doc["spec"]["egress"] == [{"action": "Allow", "ipVersion": 4}, {"action": "Allow", "ipVersion": 6}]
    assert [r["source"] for r in doc["spec"]["ingress"]] == [{"selector": "has(sg.projectcalico.org/openstack-sg-d)"}] * 2
    assert secgroups.address_group_users([sg], "ag") == []


def test_group_with_no_rules_denies_everything():
    doc = secgroups.policy({"id": "sg-e", "security_group_rules": []})
    parse_resource(doc)
    assert doc["spec"]["ingress"] == [] and doc["spec"]["egress"] == []
    assert doc["spec"]["types"] == ["Ingress", "Egress"]


def test_an_unmappable_rule_is_left_out_and_reported():
    problems: list[str] = []
    sg = {"id": "sg-x", "security_group_rules": [rule(id="ok", protocol="tcp", port_range_min=22, port_range_max=22),
                                                 rule(id="bad", protocol="bogus")]}
    doc = secgroups.policy(sg, None, problems)
    assert len(doc["spec"]["ingress"]) == 1
    assert problems == ["security group sg-x: security group rule bad: unknown protocol 'bogus'"]


def test_a_stateless_group_is_mapped_and_reported_as_enforced_statefully():
    problems: list[str] = []
    sg = {"id": "sg-s", "stateful": False, "security_group_rules": [rule(id="ok", protocol="udp")]}
    doc = secgroups.policy(sg, None, problems)
    assert len(doc["spec"]["ingress"]) == 1
    assert problems == ["security group sg-s: stateless groups are enforced statefully"]
    stateful: list[str] = []
    secgroups.policy(dict(sg, stateful=True), None, stateful)
    assert stateful == []

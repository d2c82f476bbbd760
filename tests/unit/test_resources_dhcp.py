"""The DHCP subnet record: one format for the driver (writer) and the agent (reader)."""

from __future__ import annotations

import json

import pytest

from calico.openstack import subnets
from calico.resources.dhcp import HostRoute, SubnetRecord, SubnetRecordError

KEY = "/calico/dhcp/v2/no-region/subnet/s1"

NEUTRON_SUBNET = {
    "id": "s1", "network_id": "net-1", "cidr": "198.18.20.0/24", "ip_version": 4, "gateway_ip": "198.18.20.1",
    "enable_dhcp": True, "dns_nameservers": ["198.18.0.53"],
    "host_routes": [{"destination": "198.18.30.0/24", "nexthop": "198.18.20.254"}],
    "ipv6_address_mode": None, "ipv6_ra_mode": None, "name": "ignored",
}


def test_driver_record_is_the_same_json_as_before_and_reads_back_equal():
    data = subnets.record(NEUTRON_SUBNET)
    assert data == {
        "network_id": "net-1", "cidr": "198.18.20.0/24", "ip_version": 4, "gateway_ip": "198.18.20.1",
        "dns_servers": ["198.18.0.53"], "host_routes": [{"destination": "198.18.30.0/24", "nexthop": "198.18.20.254"}],
        "ipv6_address_mode": None, "ipv6_ra_mode": None,
    }
    back = SubnetRecord.from_json(KEY, json.dumps(data))
    assert back.to_dict() == data
    assert back.host_routes == (HostRoute("198.18.30.0/24", "198.18.20.254"),)
    assert back.version == 4 and str(back.network) == "198.18.20.0/24"


def test_subnet_without_dhcp_has_no_record():
    assert subnets.record({**NEUTRON_SUBNET, "enable_dhcp": False}) is None


def test_ipv6_record_with_modes_and_unknown_fields_ignored():
    data = {"network_id": "n", "cidr": "fd00:20::/64", "ip_version": 6, "gateway_ip": "fd00:20::1",
            "dns_servers": [], "host_routes": [], "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac", "x": 1}
    rec = SubnetRecord.from_json(KEY, json.dumps(data).encode())
    assert rec.ipv6_address_mode == "slaac" and rec.version == 6 and rec.gateway_ip == "fd00:20::1"


def test_ip_version_null_is_taken_from_the_cidr():
    rec = SubnetRecord.from_json(KEY, json.dumps({"network_id": "n", "cidr": "fd00:21::/64", "ip_version": None}))
    assert rec.version == 6 and rec.gateway_ip is None and rec.dns_servers == ()


@pytest.mark.parametrize(("change", "field"), [
    ({"network_id": ""}, "network_id"),
    ({"cidr": "198.18.20.1/24"}, "cidr"),
    ({"cidr": "nonsense"}, "cidr"),
    ({"ip_version": 6}, "ip_version"),
    ({"gateway_ip": "fd00::1"}, "gateway_ip"),
    ({"gateway_ip": "x"}, "gateway_ip"),
    ({"dns_servers": "198.18.0.53"}, "dns_servers"),
    ({"dns_servers": ["198.18.0.53", "nope"]}, "dns_servers[1]"),
    ({"host_routes": [{"destination": "fd00:1::/64", "nexthop": "198.18.20.2"}]}, "host_routes[0].destination"),
    ({"host_routes": [{"destination": "198.18.1.0/24", "nexthop": "fd00::2"}]}, "host_routes[0].nexthop"),
    ({"host_routes": ["198.18.1.0/24"]}, "host_routes[0]"),
    ({"ipv6_address_mode": "dhcp"}, "ipv6_address_mode"),
    ({"ipv6_ra_mode": 3}, "ipv6_ra_mode"),
])
def test_bad_fields_are_refused_naming_key_and_field(change, field):
    data = {**subnets.record(NEUTRON_SUBNET), **change}
    with pytest.raises(SubnetRecordError) as err:
        SubnetRecord.from_json(KEY, json.dumps(data))
    assert str(err.value).startswith(f"{KEY}: {field}")


@pytest.mark.parametrize("value", [b"{not json", b"[1, 2]", b"\xff"])
def test_values_that_are_not_json_objects_are_refused(value):
    with pytest.raises(SubnetRecordError, match=KEY):
        SubnetRecord.from_json(KEY, value)

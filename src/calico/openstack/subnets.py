"""Neutron subnets → the records the Calico DHCP agents read (`/calico/dhcp/v2/<region>/subnet/<id>`). Pure.

Only subnets with DHCP enabled are written; a record carries what dnsmasq needs to answer for the subnet. Its
format is `calico.resources.dhcp.SubnetRecord`, which the agents read back with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calico.resources.dhcp import HostRoute, SubnetRecord


def record(subnet: Mapping[str, Any]) -> dict[str, Any] | None:
    if not subnet.get("enable_dhcp", True):
        return None
    return SubnetRecord(
        network_id=subnet["network_id"], cidr=subnet["cidr"], ip_version=subnet.get("ip_version"),
        gateway_ip=subnet.get("gateway_ip"), dns_servers=tuple(subnet.get("dns_nameservers") or ()),
        host_routes=tuple(HostRoute(r["destination"], r["nexthop"]) for r in subnet.get("host_routes") or ()),
        ipv6_address_mode=subnet.get("ipv6_address_mode"), ipv6_ra_mode=subnet.get("ipv6_ra_mode"),
    ).to_dict()

"""Neutron subnets → the records the Calico DHCP agents read (`/calico/dhcp/v2/<region>/subnet/<id>`). Pure.

Only subnets with DHCP enabled are written; a record carries what dnsmasq needs to answer for the subnet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def record(subnet: Mapping[str, Any]) -> dict[str, Any] | None:
    if not subnet.get("enable_dhcp", True):
        return None
    return {
        "network_id": subnet["network_id"], "cidr": subnet["cidr"], "ip_version": subnet.get("ip_version"),
        "gateway_ip": subnet.get("gateway_ip"), "dns_servers": list(subnet.get("dns_nameservers") or ()),
        "host_routes": [{"destination": r["destination"], "nexthop": r["nexthop"]}
                        for r in subnet.get("host_routes") or ()],
        "ipv6_address_mode": subnet.get("ipv6_address_mode"), "ipv6_ra_mode": subnet.get("ipv6_ra_mode"),
    }

"""Subnet records and endpoints as the OpenStack driver writes them (its own pure mapping builds them)."""

from __future__ import annotations

import json
from typing import Any

from calico.datastore.keys import dhcp_subnet_prefix, kind_prefix
from calico.datastore.syncer import Update
from calico.openstack import ports, subnets

REGION = "no-region"


def neutron_subnet(subnet_id: str, cidr: str, gateway: str | None, **kw: Any) -> dict[str, Any]:
    version = 6 if ":" in cidr else 4
    return {"id": subnet_id, "network_id": "net-1", "cidr": cidr, "ip_version": version, "gateway_ip": gateway,
            "enable_dhcp": True, "dns_nameservers": [], "host_routes": [], "ipv6_address_mode": None,
            "ipv6_ra_mode": None, **kw}


def neutron_port(port_id: str, mac: str, fixed: list[tuple[str, str]], host: str = "h1") -> dict[str, Any]:
    return {"id": port_id, "device_id": f"vm-{port_id[:4]}", "device_owner": "compute:nova", "binding:host_id": host,
            "network_id": "net-1", "project_id": "p", "mac_address": mac, "admin_state_up": True,
            "security_groups": ["sg"], "fixed_ips": [{"subnet_id": s, "ip_address": a} for s, a in fixed]}


def subnet_key(subnet_id: str) -> str:
    return dhcp_subnet_prefix(REGION) + subnet_id


def subnet_update(subnet: dict[str, Any], rev: int = 1) -> Update:
    data = subnets.record(subnet)
    assert data is not None
    return Update(subnet_key(subnet["id"]), json.dumps(data).encode(), rev)


def endpoint_doc(port: dict[str, Any]) -> dict[str, Any]:
    return ports.endpoint(port)


def endpoint_key(doc: dict[str, Any]) -> str:
    return kind_prefix("workloadendpoints", "openstack") + doc["metadata"]["name"]


def endpoint_update(port: dict[str, Any], rev: int = 1) -> Update:
    doc = endpoint_doc(port)
    return Update(endpoint_key(doc), json.dumps(doc).encode(), rev)

"""The DHCP agents' subnet record, `/calico/dhcp/v2/<region>/subnet/<subnet id>` (pure, no I/O).

The OpenStack driver writes one per Neutron subnet with DHCP enabled (`calico.openstack.subnets`); every host's
`calico-dhcp-agent` reads them. This module is the one definition of the format both sides use.

In: a `SubnetRecord` built by the writer, or the JSON bytes read from a key (with the key, for messages). Out:
`to_json()` / `to_dict()` for the writer; `from_json()` for readers, which validates every field and raises
`SubnetRecordError` naming the key and the field. Fields this version does not know are ignored on reading.

JSON fields (Neutron's names): `network_id`, `cidr`, `ip_version` (4 or 6; null: taken from the cidr),
`gateway_ip` (or null), `dns_servers` ([address]), `host_routes` ([{"destination": cidr, "nexthop": address}],
of the subnet's family), `ipv6_address_mode` and `ipv6_ra_mode` (null, `slaac`, `dhcpv6-stateful` or
`dhcpv6-stateless`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico.resources.records import json_object

__all__ = ["IPV6_MODES", "HostRoute", "SubnetRecord", "SubnetRecordError"]

SLAAC = "slaac"
DHCPV6_STATEFUL = "dhcpv6-stateful"
DHCPV6_STATELESS = "dhcpv6-stateless"
IPV6_MODES = (SLAAC, DHCPV6_STATEFUL, DHCPV6_STATELESS)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SubnetRecordError(ValueError):
    """A stored subnet record that cannot be used; the message names the key and the field."""


@dataclass(frozen=True, slots=True)
class HostRoute:
    destination: str  # a CIDR
    nexthop: str  # an address

    def to_dict(self) -> dict[str, str]:
        return {"destination": self.destination, "nexthop": self.nexthop}


@dataclass(frozen=True, slots=True)
class SubnetRecord:
    network_id: str
    cidr: str
    ip_version: int | None = None
    gateway_ip: str | None = None
    dns_servers: tuple[str, ...] = ()
    host_routes: tuple[HostRoute, ...] = ()
    ipv6_address_mode: str | None = None
    ipv6_ra_mode: str | None = None

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.cidr)

    @property
    def version(self) -> int:
        return self.ip_version or self.network.version

    def to_dict(self) -> dict[str, Any]:
        return {
            "network_id": self.network_id, "cidr": self.cidr, "ip_version": self.ip_version,
            "gateway_ip": self.gateway_ip, "dns_servers": list(self.dns_servers),
            "host_routes": [r.to_dict() for r in self.host_routes],
            "ipv6_address_mode": self.ipv6_address_mode, "ipv6_ra_mode": self.ipv6_ra_mode,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_json(cls, key: str, value: bytes | str) -> SubnetRecord:
        return cls.from_dict(key, json_object(key, value, SubnetRecordError))

    @classmethod
    def from_dict(cls, key: str, data: Mapping[str, Any]) -> SubnetRecord:
        network_id = data.get("network_id")
        if not isinstance(network_id, str) or not network_id:
            raise SubnetRecordError(f"{key}: network_id must be a non-empty string (got {network_id!r})")
        net = _network(key, "cidr", data.get("cidr"))
        version = data.get("ip_version")
        if version is not None and version != net.version:
            raise SubnetRecordError(f"{key}: ip_version {version!r} does not match cidr {net}")
        gateway = data.get("gateway_ip")
        if gateway is not None:
            gateway = str(_address(key, "gateway_ip", gateway, net.version))
        dns = data.get("dns_servers") or []
        if not isinstance(dns, list):
            raise SubnetRecordError(f"{key}: dns_servers must be a list of addresses")
        servers = tuple(str(_address(key, f"dns_servers[{i}]", s)) for i, s in enumerate(dns))
        return cls(
            network_id=network_id, cidr=str(net), ip_version=version, gateway_ip=gateway, dns_servers=servers,
            host_routes=_host_routes(key, data.get("host_routes") or [], net.version),
            ipv6_address_mode=_mode(key, "ipv6_address_mode", data.get("ipv6_address_mode")),
            ipv6_ra_mode=_mode(key, "ipv6_ra_mode", data.get("ipv6_ra_mode")),
        )


def _network(key: str, field: str, value: Any) -> IPNetwork:
    try:
        return ipaddress.ip_network(value)
    except (TypeError, ValueError):
        raise SubnetRecordError(f"{key}: {field} {value!r} is not a network (address/length, host bits 0)") from None


def _address(key: str, field: str, value: Any, version: int | None = None) -> IPAddress:
    try:
        addr = ipaddress.ip_address(value)
    except (TypeError, ValueError):
        raise SubnetRecordError(f"{key}: {field} {value!r} is not an IP address") from None
    if version is not None and addr.version != version:
        raise SubnetRecordError(f"{key}: {field} {value} is not an IPv{version} address like the subnet")
    return addr


def _host_routes(key: str, value: Any, version: int) -> tuple[HostRoute, ...]:
    if not isinstance(value, list):
        raise SubnetRecordError(f"{key}: host_routes must be a list")
    routes = []
    for i, r in enumerate(value):
        if not isinstance(r, dict):
            raise SubnetRecordError(f"{key}: host_routes[{i}] must be an object with destination and nexthop")
        dest = _network(key, f"host_routes[{i}].destination", r.get("destination"))
        if dest.version != version:
            raise SubnetRecordError(f"{key}: host_routes[{i}].destination {dest} is not IPv{version}")
        hop = _address(key, f"host_routes[{i}].nexthop", r.get("nexthop"), version)
        routes.append(HostRoute(str(dest), str(hop)))
    return tuple(routes)


def _mode(key: str, field: str, value: Any) -> str | None:
    if value is not None and value not in IPV6_MODES:
        raise SubnetRecordError(f"{key}: {field} {value!r} is not one of {', '.join(IPV6_MODES)} (or null)")
    return value  # type: ignore[no-any-return]

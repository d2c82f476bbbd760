"""Endpoint kinds: `WorkloadEndpoint` (namespaced) and `HostEndpoint`.

In: decoded endpoint documents (agents parse thousands of workload endpoints at start, so this
path avoids anything costly). Out: validated endpoints with canonical addresses, MACs and ports.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import PlainValidator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import (
    CIDR,
    IP,
    MAC,
    PORT_PROTOCOLS,
    HostIfName,
    IfName,
    IPv4,
    IPv6,
    Name,
    PortName,
    PortNumber,
    Protocol,
    parse_interface,
)
from calico.resources.meta import CalicoModel, Resource

__all__ = [
    "IPNAT",
    "EndpointPort",
    "HostEndpoint",
    "HostEndpointSpec",
    "WorkloadEndpoint",
    "WorkloadEndpointPort",
    "WorkloadEndpointSpec",
]

_CONTAINER_ID = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")


# The canonical `a.b.c.d/32` (or bare `a.b.c.d`) exactly as the slow path prints it back: ASCII decimal octets,
# no leading zeros, at most 255. Every remote endpoint has its own address, so the cache below misses at start
# of day; this covers the usual case without `ipaddress` (~10 µs each) and without filling the cache (~150 B an
# entry). Anything else takes the full, cached parse.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_CANONICAL_V4_HOST = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/32)?\Z")


@lru_cache(maxsize=16384)
def _host_cidr(text: str) -> str:
    iface = parse_interface(text, "IP network")
    if iface.network.prefixlen != iface.max_prefixlen:
        raise ValueError(f"IP network {show(text)} contains multiple addresses: must be /{iface.max_prefixlen}")
    return f"{iface.ip}/{iface.max_prefixlen}"


def _check_host_cidr(value: Any) -> str:
    """A single address as a CIDR (/32 or /128); a bare IP gets the full prefix."""
    if not isinstance(value, str):
        raise ValueError(f"IP network must be a string (got {show(value)})")
    if type(value) is str and _CANONICAL_V4_HOST.match(value):  # a plain str: returned as is
        return value if "/" in value else f"{value}/32"
    return _host_cidr(value)


def _check_container_id(value: Any) -> str:
    # Calico's own examples leave an all-digit ID unquoted, which YAML reads as a number.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        value = str(value)
    if not isinstance(value, str) or not _CONTAINER_ID.match(value):
        raise ValueError(f"invalid containerID {show(value)}: alphanumerics and '-', starting and ending alphanumeric")
    return value


HostCIDR = Annotated[str, PlainValidator(_check_host_cidr)]
ContainerID = Annotated[str, PlainValidator(_check_container_id)]


def _check_port_protocol(protocol: int | str) -> None:
    if protocol not in PORT_PROTOCOLS:
        fail(f"protocol {show(protocol)} does not support ports: use TCP, UDP or SCTP", "protocol")


class EndpointPort(CalicoModel):
    """A named port on a host endpoint."""

    name: PortName
    protocol: Protocol
    port: PortNumber

    @model_validator(mode="after")
    def _proto(self) -> EndpointPort:
        _check_port_protocol(self.protocol)
        return self


class WorkloadEndpointPort(CalicoModel):
    """A named port on a workload, optionally mapped to a host port."""

    name: PortName | None = None
    protocol: Protocol
    port: PortNumber
    hostPort: PortNumber | None = None
    hostIP: IP | None = None

    @model_validator(mode="after")
    def _proto(self) -> WorkloadEndpointPort:
        _check_port_protocol(self.protocol)
        if self.name is None and self.hostPort is None:
            fail("a port needs a name unless it has a hostPort", "name")
        return self


class IPNAT(CalicoModel):
    """A 1:1 NAT (floating IP) from an external address to one of the endpoint's addresses."""

    internalIP: IP
    externalIP: IP

    @model_validator(mode="after")
    def _same_family(self) -> IPNAT:
        if (":" in self.internalIP) != (":" in self.externalIP):
            fail("internalIP and externalIP must be the same IP version", "externalIP")
        return self


class WorkloadEndpointSpec(CalicoModel):
    orchestrator: str | None = None
    workload: str | None = None
    node: Name | None = None
    containerID: ContainerID | None = None
    pod: str | None = None
    endpoint: str | None = None
    serviceAccountName: str | None = None
    ipNetworks: list[HostCIDR] | None = None
    ipNATs: list[IPNAT] | None = None
    ipv4Gateway: IPv4 | None = None
    ipv6Gateway: IPv6 | None = None
    profiles: list[Name] | None = None
    interfaceName: IfName
    mac: MAC | None = None
    ports: list[WorkloadEndpointPort] | None = None
    allowSpoofedSourcePrefixes: list[CIDR] | None = None

    @model_validator(mode="after")
    def _nats_inside(self) -> WorkloadEndpointSpec:
        if self.ipNATs:
            own = {n.partition("/")[0] for n in self.ipNetworks or ()}
            for i, nat in enumerate(self.ipNATs):
                if nat.internalIP not in own:  # both canonical text
                    fail(
                        f"NAT internalIP {nat.internalIP} is not one of the endpoint's ipNetworks",
                        "ipNATs",
                        i,
                        "internalIP",
                    )
        return self


class WorkloadEndpoint(Resource):
    KIND: ClassVar[str] = "WorkloadEndpoint"
    PLURAL: ClassVar[str] = "workloadendpoints"
    NAMESPACED: ClassVar[bool] = True
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("workloadendpoint", "wep", "weps")

    kind: Literal["WorkloadEndpoint"] = "WorkloadEndpoint"
    spec: WorkloadEndpointSpec


class HostEndpointSpec(CalicoModel):
    node: Name
    interfaceName: HostIfName | None = None
    expectedIPs: list[IP] | None = None
    profiles: list[Name] | None = None
    ports: list[EndpointPort] | None = None

    @model_validator(mode="after")
    def _has_target(self) -> HostEndpointSpec:
        if not self.interfaceName and not self.expectedIPs:
            fail("a host endpoint needs an interfaceName or expectedIPs", "interfaceName")
        return self


class HostEndpoint(Resource):
    KIND: ClassVar[str] = "HostEndpoint"
    PLURAL: ClassVar[str] = "hostendpoints"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("hostendpoint", "hep", "heps")

    kind: Literal["HostEndpoint"] = "HostEndpoint"
    spec: HostEndpointSpec

"""BGP kinds: `BGPConfiguration` and `BGPPeer`.

In: decoded BGP documents. Out: validated resources. The cluster-wide `default` BGPConfiguration
gets Calico's defaults filled in (node-to-node mesh on, AS 64512, listen port 179); per-node
configurations (`node.<name>`) are left as written so they override only what they set.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import (
    CIDR,
    IP,
    ASNumber,
    Duration,
    IPv4,
    IPv6,
    LogLevel,
    Name,
    OptionalSelector,
    PortNumber,
    int_range,
    parse_ip,
)
from calico.resources.meta import CalicoModel, Resource, empty_spec

__all__ = [
    "DEFAULT_AS_NUMBER",
    "BGPConfiguration",
    "BGPConfigurationSpec",
    "BGPPassword",
    "BGPPeer",
    "BGPPeerSpec",
    "Community",
    "LogLevel",
    "PrefixAdvertisement",
    "SecretKeySelector",
    "ServiceIPBlock",
    "parse_peer_ip",
]

DEFAULT_AS_NUMBER = 64512
DEFAULT_LISTEN_PORT = 179

_STANDARD_COMMUNITY = re.compile(r"([0-9]+):([0-9]+)\Z")
_LARGE_COMMUNITY = re.compile(r"([0-9]+):([0-9]+):([0-9]+)\Z")
_IGNORED_IFACE = re.compile(r"[a-zA-Z0-9_.*-]{1,15}\Z")


def community_problem(value: str) -> str | None:
    """Why `value` is not a BGP community ("aa:nn" 16-bit parts or "aa:nn:mm" 32-bit parts)."""
    m = _STANDARD_COMMUNITY.match(value)
    if m:
        return None if all(int(p) < 2**16 for p in m.groups()) else "standard community parts must be 0-65535"
    m = _LARGE_COMMUNITY.match(value)
    if m:
        return None if all(int(p) < 2**32 for p in m.groups()) else "large community parts must be 0-4294967295"
    return 'must be "aa:nn" or "aa:nn:mm"'


def parse_peer_ip(text: str) -> tuple[str, int | None]:
    """Split a (validated) peerIP into address and optional port."""
    if text.startswith("["):
        addr, _, port = text[1:].partition("]:")
        return addr, int(port)
    if text.count(":") == 1:
        addr, _, port = text.partition(":")
        return addr, int(port)
    return text, None


def _check_peer_ip(value: Any) -> str:
    """`<IP>`, `<IPv4>:<port>` or `[<IPv6>]:<port>`; the address part is canonicalised."""
    if not isinstance(value, str):
        raise ValueError(f"peerIP must be a string (got {show(value)})")
    bad = ValueError(f"invalid peerIP {show(value)}: must be <IP>, <IPv4>:<port> or [<IPv6>]:<port>")
    port: str | None = None
    addr = value
    if value.startswith("["):
        addr, sep, port = value[1:].partition("]:")
        if not sep:
            raise bad
    elif value.count(":") == 1:
        addr, _, port = value.partition(":")
    try:
        ip = parse_ip(addr)
    except ValueError:
        raise bad from None
    if port is None:
        return str(ip)
    if (ip.version == 6) != value.startswith("[") or not (port.isascii() and port.isdigit()):
        raise bad
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid peerIP {show(value)}: port must be 1-65535")
    return f"[{ip}]:{int(port)}" if ip.version == 6 else f"{ip}:{int(port)}"


def _check_ignored_iface(value: Any) -> str:
    if not isinstance(value, str) or value == "*" or not _IGNORED_IFACE.match(value):
        raise ValueError(f"invalid interface name {show(value)}: 1-15 of [a-zA-Z0-9_.*-], not just '*'")
    return value


PeerIP = Annotated[str, PlainValidator(_check_peer_ip)]
IgnoredInterface = Annotated[str, PlainValidator(_check_ignored_iface)]


class SecretKeySelector(CalicoModel):
    """A key in a Kubernetes Secret in calico-node's namespace."""

    name: Name
    key: Annotated[str, Field(min_length=1)]
    optional: bool | None = None


class BGPPassword(CalicoModel):
    secretKeyRef: SecretKeySelector | None = None


class ServiceIPBlock(CalicoModel):
    cidr: CIDR


class Community(CalicoModel):
    name: Name
    value: str

    @model_validator(mode="after")
    def _value(self) -> Community:
        why = community_problem(self.value)
        if why:
            fail(f"invalid community value {show(self.value)}: {why}", "value")
        return self


class PrefixAdvertisement(CalicoModel):
    cidr: CIDR
    communities: list[str]


class BGPConfigurationSpec(CalicoModel):
    logSeverityScreen: LogLevel | None = None
    nodeToNodeMeshEnabled: bool | None = None
    asNumber: ASNumber | None = None
    serviceClusterIPs: list[ServiceIPBlock] | None = None
    serviceExternalIPs: list[ServiceIPBlock] | None = None
    serviceLoadBalancerIPs: list[ServiceIPBlock] | None = None
    listenPort: PortNumber | None = None
    nodeMeshPassword: BGPPassword | None = None
    nodeMeshMaxRestartTime: Duration | None = None
    communities: list[Community] | None = None
    prefixAdvertisements: list[PrefixAdvertisement] | None = None
    bindMode: Literal["None", "NodeIP"] | None = None
    ignoredInterfaces: list[IgnoredInterface] | None = None
    localWorkloadPeeringIPV4: IPv4 | None = None
    localWorkloadPeeringIPV6: IPv6 | None = None

    @model_validator(mode="after")
    def _check(self) -> BGPConfigurationSpec:
        names = {c.name for c in self.communities or ()}
        if self.communities and not self.prefixAdvertisements:
            fail("communities are defined but not used in prefixAdvertisements", "communities")
        for i, adv in enumerate(self.prefixAdvertisements or ()):
            for j, value in enumerate(adv.communities):
                if value not in names and community_problem(value):
                    fail(
                        f"community {show(value)} is neither a defined community name nor a valid value",
                        "prefixAdvertisements",
                        i,
                        "communities",
                        j,
                    )
        if self.nodeToNodeMeshEnabled is False:
            for field in ("nodeMeshPassword", "nodeMeshMaxRestartTime"):
                if getattr(self, field) is not None:
                    fail(f"{field} cannot be set when nodeToNodeMeshEnabled is false", field)
        return self


class BGPConfiguration(Resource):
    KIND: ClassVar[str] = "BGPConfiguration"
    PLURAL: ClassVar[str] = "bgpconfigurations"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("bgpconfiguration", "bgpconfig", "bgpconfigs")

    kind: Literal["BGPConfiguration"] = "BGPConfiguration"
    spec: BGPConfigurationSpec = Field(default_factory=empty_spec(BGPConfigurationSpec))

    @model_validator(mode="after")
    def _defaults(self) -> BGPConfiguration:
        if self.metadata.name == "default":
            spec = self.spec
            if spec.nodeToNodeMeshEnabled is None:
                spec.nodeToNodeMeshEnabled = True
            if spec.asNumber is None:
                spec.asNumber = DEFAULT_AS_NUMBER
            if spec.listenPort is None:
                spec.listenPort = DEFAULT_LISTEN_PORT
        return self


class BGPPeerSpec(CalicoModel):
    node: Name | None = None
    nodeSelector: OptionalSelector = None
    peerIP: PeerIP | None = None
    asNumber: ASNumber | None = None
    peerSelector: OptionalSelector = None
    keepOriginalNextHop: bool = Field(default=False, exclude_if=lambda v: not v)
    password: BGPPassword | None = None
    sourceAddress: Literal["UseNodeIP", "None"] | None = None
    maxRestartTime: Duration | None = None
    keepaliveTime: Duration | None = None
    numAllowedLocalASNumbers: Annotated[int, int_range(0, 2**31 - 1, "numAllowedLocalASNumbers")] | None = None
    ttlSecurity: Annotated[int, int_range(0, 255, "ttlSecurity")] | None = None
    filters: list[Name] | None = None
    reachableBy: IP | None = None

    @model_validator(mode="after")
    def _check(self) -> BGPPeerSpec:
        if self.node is not None and self.nodeSelector is not None:
            fail("node must be empty when nodeSelector is set", "node")
        if self.peerIP is not None and self.peerSelector is not None:
            fail("peerIP must be empty when peerSelector is set", "peerIP")
        if self.asNumber and self.peerSelector is not None:
            fail("asNumber must be empty when peerSelector is set (it comes from the selected nodes)", "asNumber")
        if self.reachableBy is not None:
            if self.peerIP is None:
                fail("reachableBy needs a peerIP", "reachableBy")
            peer_v6 = ":" in parse_peer_ip(self.peerIP)[0]
            if peer_v6 != (":" in self.reachableBy):
                fail("reachableBy and peerIP must be the same IP version", "reachableBy")
        return self


class BGPPeer(Resource):
    KIND: ClassVar[str] = "BGPPeer"
    PLURAL: ClassVar[str] = "bgppeers"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("bgppeer", "bgpp", "bgpps", "bp", "bps")

    kind: Literal["BGPPeer"] = "BGPPeer"
    spec: BGPPeerSpec = Field(default_factory=empty_spec(BGPPeerSpec))

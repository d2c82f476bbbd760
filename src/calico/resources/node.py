"""The `Node` kind: one Calico host, its BGP addresses and tunnel addresses.

In: a decoded Node document. Out: a validated `Node`. Node BGP addresses keep their host bits
(`198.18.0.5/24` is the node's address *and* its subnet), unlike policy CIDRs.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import CIDR, MAC, ASNumber, IPIface, IPv4, IPv4Iface, IPv6, IPv6Iface
from calico.resources.meta import CalicoModel, Resource, empty_spec

__all__ = [
    "Node",
    "NodeAddress",
    "NodeBGPSpec",
    "NodeSpec",
    "NodeStatus",
    "NodeWireguardSpec",
    "OrchRef",
]


def _check_wg_key(value: Any) -> str:
    """A WireGuard public key: base64 of 32 bytes."""
    try:
        if isinstance(value, str) and len(base64.b64decode(value, validate=True)) == 32:
            return value
    except (binascii.Error, ValueError):
        pass
    raise ValueError(f"invalid WireGuard public key {show(value)}: must be base64 of 32 bytes")


WireguardKey = Annotated[str, PlainValidator(_check_wg_key)]


class NodeBGPSpec(CalicoModel):
    ipv4Address: IPv4Iface | None = None
    ipv6Address: IPv6Iface | None = None
    ipv4IPIPTunnelAddr: IPv4 | None = None
    asNumber: ASNumber | None = None
    routeReflectorClusterID: IPv4 | None = None


class OrchRef(CalicoModel):
    orchestrator: str
    nodeName: str | None = None


class NodeWireguardSpec(CalicoModel):
    interfaceIPv4Address: IPv4 | None = None
    interfaceIPv6Address: IPv6 | None = None


class NodeAddress(CalicoModel):
    address: IPIface
    type: Literal["CalicoNodeIP", "InternalIP", "ExternalIP"] | None = None


class NodeSpec(CalicoModel):
    bgp: NodeBGPSpec | None = None
    ipv4VXLANTunnelAddr: IPv4 | None = None
    vxlanTunnelMACAddr: MAC | None = None
    ipv6VXLANTunnelAddr: IPv6 | None = None
    vxlanTunnelMACAddrV6: MAC | None = None
    orchRefs: list[OrchRef] | None = None
    wireguard: NodeWireguardSpec | None = None
    addresses: list[NodeAddress] | None = None

    @model_validator(mode="after")
    def _bgp_not_empty(self) -> NodeSpec:
        if self.bgp is not None and not self.bgp.model_dump(exclude_none=True):
            fail("bgp must not be empty: omit it or set an address", "bgp")
        return self


class NodeStatus(CalicoModel):
    wireguardPublicKey: WireguardKey | None = None
    wireguardPublicKeyV6: WireguardKey | None = None
    podCIDRs: list[CIDR] | None = None


class Node(Resource):
    KIND: ClassVar[str] = "Node"
    PLURAL: ClassVar[str] = "nodes"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("node", "no")

    kind: Literal["Node"] = "Node"
    spec: NodeSpec = Field(default_factory=empty_spec(NodeSpec))
    status: NodeStatus | None = None

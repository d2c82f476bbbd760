"""Nodes: every Node resource in; each node's VXLAN tunnel endpoint, and its addresses for routing, out.

Enters (`NodeTracker.on_node`): Node changes of the whole cluster (None = deleted).
Leaves, only when what a node contributes changed:
  - to its `VTEPSink` (the sequencer): `VTEPUpdate` for a node with a usable VXLAN tunnel of either family (a
    tunnel address and an underlay address of that family) or an IP-in-IP tunnel address, else None (remove);
  - to its `NodeSink` (the route resolver): the node's `NodeInfo` (None once the Node is gone).

A node's VXLAN MAC is its Node's vxlanTunnelMACAddr (vxlanTunnelMACAddrV6 for IPv6) when that is a 6-byte
MAC, otherwise the one Calico derives from the node's name (`vtep_mac`), so every host agrees on it
without it being written anywhere.
"""

from __future__ import annotations

import hashlib
import logging
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from typing import Protocol

from calico.calculation.events import VTEPUpdate
from calico.calculation.types import NodeInfo
from calico.resources import Node

log = logging.getLogger(__name__)

__all__ = ["NodeSink", "NodeTracker", "VTEPSink", "node_info", "vtep_for", "vtep_mac"]


class VTEPSink(Protocol):
    """Where VTEPs go, None meaning removed (`sequencer.Sequencer`)."""

    def vtep(self, node: str, update: VTEPUpdate | None) -> None: ...


class NodeSink(Protocol):
    """Who routes by node addresses (`routes.RouteResolver`)."""

    def update_node(self, name: str, info: NodeInfo | None) -> None: ...


def vtep_mac(node: str, version: int) -> str:
    """Calico's MAC for a node's VXLAN device when its Node names none: 0x66 ("f": unicast, locally
    administered) then the first five bytes of the SHA-1 of the node name (`<name>-v6` for IPv6)."""
    name = node if version == 4 else f"{node}-v6"
    raw = b"f" + hashlib.sha1(name.encode(), usedforsecurity=False).digest()[:5]
    return ":".join(f"{b:02x}" for b in raw)


def _mac(node: str, given: str | None, version: int) -> str:
    if given is not None and len(given) == 17:
        return given
    if given is not None:
        log.warning("node %s: VXLAN MAC %s is not a 6-byte MAC; using the derived one", node, given)
    return vtep_mac(node, version)


def node_info(res: Node) -> NodeInfo:
    spec = res.spec
    ipv4: IPv4Interface | None = None
    ipv6: IPv6Interface | None = None
    ipip: str | None = None
    if spec.bgp is not None:
        ipip = spec.bgp.ipv4IPIPTunnelAddr
        if spec.bgp.ipv4Address:
            ipv4 = ip_interface(spec.bgp.ipv4Address)  # type: ignore[assignment]
        if spec.bgp.ipv6Address:
            ipv6 = ip_interface(spec.bgp.ipv6Address)  # type: ignore[assignment]
    return NodeInfo(
        ipv4=ipv4,
        ipv6=ipv6,
        vxlan_ipv4=spec.ipv4VXLANTunnelAddr,
        vxlan_mac=spec.vxlanTunnelMACAddr,
        vxlan_ipv6=spec.ipv6VXLANTunnelAddr,
        vxlan_mac_v6=spec.vxlanTunnelMACAddrV6,
        ipip_ipv4=ipip,
    )


def vtep_for(node: str, info: NodeInfo) -> VTEPUpdate | None:
    """The node's VTEP, or None when it has no usable tunnel (VXLAN of either family, or IP-in-IP)."""
    v4, v6 = info.tunnel_address(4), info.tunnel_address(6)
    if v4 is None and v6 is None and info.ipip_ipv4 is None:
        return None
    return VTEPUpdate(
        node=node,
        parent_ip=str(info.ipv4.ip) if v4 is not None and info.ipv4 is not None else None,
        ipv4_addr=v4,
        mac=_mac(node, info.vxlan_mac, 4) if v4 is not None else None,
        parent_ip_v6=str(info.ipv6.ip) if v6 is not None and info.ipv6 is not None else None,
        ipv6_addr=v6,
        mac_v6=_mac(node, info.vxlan_mac_v6, 6) if v6 is not None else None,
        ipip_addr=info.ipip_ipv4,
    )


class NodeTracker:
    """See the module docstring."""

    def __init__(self, vteps: VTEPSink, routes: NodeSink) -> None:
        self._vteps = vteps
        self._routes = routes
        self._nodes: dict[str, NodeInfo] = {}

    def knows(self, name: str) -> bool:
        return name in self._nodes

    def on_node(self, name: str, res: Node | None) -> None:
        info = None if res is None else node_info(res)
        if self._nodes.get(name) == info:
            return  # labels, AS number, ...: nothing routing depends on
        if info is None:
            del self._nodes[name]
        else:
            self._nodes[name] = info
        self._routes.update_node(name, info)
        self._vteps.vtep(name, None if info is None else vtep_for(name, info))

"""This node's VXLAN tunnel addresses, from Calico IPAM, as calico-node's allocator keeps them.

In: the Node and the IPPools. Out: `needs_tunnel_addresses` (pure) and `allocate_tunnel_addresses`, which makes
the Node's `ipv4VXLANTunnelAddr` / `ipv6VXLANTunnelAddr` (and their MACs) match the pools: an address from this
node's block of a VXLAN pool while one applies to the node, nothing (and the address released) once none does.
Felix builds `vxlan.calico` / `vxlan-v6.calico` from these fields; the other hosts route to this node's blocks
through it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from calico.calculation.nodes import vtep_mac
from calico.datastore.kv import KVStore
from calico.datastore.store import Conflict, ResourceStore
from calico.ipam import AutoAssignArgs, IPAMClient
from calico.resources import IPPool, Node
from calico.selector import parse

__all__ = ["allocate_tunnel_addresses", "needs_tunnel_addresses", "tunnel_handle", "vxlan_pools"]

log = logging.getLogger(__name__)

_FIELDS = {4: ("ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr"), 6: ("ipv6VXLANTunnelAddr", "vxlanTunnelMACAddrV6")}
_WRITE_ATTEMPTS = 5


def tunnel_handle(node: str, version: int) -> str:
    return f"vxlan-tunnel-addr-{node}" if version == 4 else f"vxlan-v6-tunnel-addr-{node}"


def needs_tunnel_addresses(node: Node, pools: Iterable[IPPool]) -> bool:
    """True when an enabled pool uses VXLAN, or the Node still holds a tunnel address to give back."""
    if node.spec.ipv4VXLANTunnelAddr or node.spec.ipv6VXLANTunnelAddr:
        return True
    return any(p.spec.vxlanMode != "Never" and not p.spec.disabled for p in pools)


def vxlan_pools(node: Node, pools: Iterable[IPPool], version: int) -> list[IPPool]:
    """The pools a tunnel address of this family may come from: enabled, VXLAN, for tunnels, selecting the node."""
    labels = node.metadata.labels or {}
    return [
        p for p in pools
        if ipaddress.ip_network(p.spec.cidr).version == version and not p.spec.disabled
        and p.spec.vxlanMode != "Never" and "Tunnel" in (p.spec.allowedUses or ())
        and parse(p.spec.nodeSelector).evaluate(labels)
    ]


async def _wanted(ipam: IPAMClient, node: Node, pools: list[IPPool], version: int) -> str | None:
    """The tunnel address this family should have (allocating one if needed), or None (released)."""
    name = node.metadata.name
    handle = tunnel_handle(name, version)
    held = [str(a) for a in await ipam.ips_by_handle(handle)]
    if not pools:
        if held:
            await ipam.release_by_handle(handle)
        return None
    nets = [ipaddress.ip_network(p.spec.cidr) for p in pools]
    current = getattr(node.spec, _FIELDS[version][0])
    usable = [a for a in held if any(ipaddress.ip_address(a) in n for n in nets)]
    if current in usable:
        return str(current)
    if usable:  # allocated before a crash kept it off the Node: use it rather than churn
        return usable[0]
    if held:
        await ipam.release_by_handle(handle)
    names = [p.metadata.name for p in pools]
    got = await ipam.auto_assign(AutoAssignArgs(
        num4=int(version == 4), num6=int(version == 6), handle_id=handle, hostname=name,
        attrs={"node": name, "type": "vxlanTunnelAddress"}, intended_use="Tunnel",
        ipv4_pools=names if version == 4 else None, ipv6_pools=names if version == 6 else None,
    ))
    addrs = got.ipv4 if version == 4 else got.ipv6
    if not addrs:
        log.error("Node %s: no free address for its IPv%d VXLAN tunnel in %s", name, version, ", ".join(names))
        return None
    log.info("Node %s: IPv%d VXLAN tunnel address %s", name, version, addrs[0])
    return str(addrs[0])


async def allocate_tunnel_addresses(kv: KVStore, node: Node, pools: list[IPPool]) -> Node:
    """Give `node` its VXLAN tunnel addresses from IPAM (handles `vxlan-tunnel-addr-<node>`,
    `vxlan-v6-tunnel-addr-<node>`), or take them back; write the Node (compare-and-swap) and return it."""
    ipam = IPAMClient(kv)
    updates: dict[str, str | None] = {}
    for version, (addr_field, mac_field) in _FIELDS.items():
        want = await _wanted(ipam, node, vxlan_pools(node, pools, version), version)
        if want != getattr(node.spec, addr_field):
            updates[addr_field] = want
        mac = getattr(node.spec, mac_field)
        if want is not None and mac is None:
            updates[mac_field] = vtep_mac(node.metadata.name, version)
        elif want is None and mac is not None:
            updates[mac_field] = None
    if not updates:
        return node
    store = ResourceStore(kv)
    for _ in range(_WRITE_ATTEMPTS):
        changed = node.model_copy(update={"spec": node.spec.model_copy(update=updates)})
        try:
            stored = await store.update(changed)
            assert isinstance(stored, Node)
            return stored
        except Conflict:  # someone else wrote the Node meanwhile: apply the same fields to theirs
            fresh = await store.get("Node", node.metadata.name)
            assert isinstance(fresh, Node)
            node = fresh
    raise Conflict(f"Node({node.metadata.name}): tunnel addresses not written after {_WRITE_ATTEMPTS} attempts")

"""This node's VXLAN tunnel addresses: when they are needed, and the allocation IPAM will do.

In: the Node and the IPPools. Out: `needs_tunnel_addresses` (pure), and `allocate_tunnel_addresses`, which
waits for `calico.ipam` (see its docstring) and until then raises NotImplementedError.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.datastore.kv import KVStore
from calico.resources import IPPool, Node

__all__ = ["allocate_tunnel_addresses", "needs_tunnel_addresses"]


def needs_tunnel_addresses(node: Node, pools: Iterable[IPPool]) -> bool:
    """True when an enabled pool uses VXLAN, or the Node still holds a tunnel address to give back."""
    if node.spec.ipv4VXLANTunnelAddr or node.spec.ipv6VXLANTunnelAddr:
        return True
    return any(p.spec.vxlanMode != "Never" and not p.spec.disabled for p in pools)


async def allocate_tunnel_addresses(kv: KVStore, node: Node, pools: list[IPPool]) -> Node:
    """Give `node` its VXLAN tunnel addresses from Calico IPAM, or take them back; return the stored Node.

    What it must do, per IP family (as calico-node's tunnel address allocator does):
    - Pools that count: enabled, `vxlanMode` Always or CrossSubnet, `allowedUses` containing Tunnel, and
      `nodeSelector` matching the Node's labels (`calico.selector`).
    - If such a pool exists: keep the Node's `spec.ipv4VXLANTunnelAddr` (`ipv6VXLANTunnelAddr`) when IPAM has
      it allocated under the handle `vxlan-tunnel-addr-<node>` (`vxlan-v6-tunnel-addr-<node>`) and it lies in
      one of those pools; otherwise release that handle and allocate one address with
      `IPAMClient.auto_assign(num4=1 | num6=1, handle_id=<handle>, hostname=<node>,
      attrs={"node": <node>, "type": "vxlanTunnelAddress"}, pools restricted to the VXLAN pools)`, so it
      comes from this node's affine block. Set `spec.vxlanTunnelMACAddr` (`vxlanTunnelMACAddrV6`) when unset:
      a random, locally administered unicast MAC, kept across restarts.
    - If no such pool exists: release the handle and clear the address and MAC fields.
    - Write the Node with a compare-and-swap on its resourceVersion (`ResourceStore.update`), retrying on
      a conflict; an IPAM or datastore error is logged and retried on the next refresh, never fatal.
    Felix builds `vxlan.calico` (`vxlan-v6.calico`) from these fields; other hosts route to this node's blocks
    through it.
    """
    raise NotImplementedError("VXLAN tunnel address allocation needs calico.ipam (IPAMClient), not yet available")

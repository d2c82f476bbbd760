"""Route resolver: pools, nodes, block affinities and remote workload addresses in; Felix's routes out.

Enters:
  - `pool(cidr, update)`: every IP pool (only the VXLAN ones, vxlanMode Always / CrossSubnet, matter here);
  - `update_node(name, info)`: every node's underlay addresses and tunnel addresses (`NodeInfo`);
  - `update_affinity(node, block, held)`: whether a node holds a confirmed affinity for a block;
  - `update_workload(workload, node, nets)`: every WorkloadEndpoint's node and addresses, by a stable id (the
    graph passes the datastore key, a string the agent holds anyway); this host's are ignored (their routes
    come from the endpoint itself).
Leaves (`flush`, to its `RouteSink`, the sequencer): for each destination whose route may have changed, its
`RouteUpdate` or None:
  - a block held by this host: LOCAL_BLOCK (whatever its pool; the dataplane may blackhole it);
  - a block held by another node, inside a VXLAN pool: VXLAN via the node's tunnel address of the block's
    family, or, for a CrossSubnet pool when the node's underlay address is inside this host's own subnet of
    that family, DIRECT via that underlay address;
  - a remote workload address inside a VXLAN pool but outside every block its own node holds (borrowed): the
    same, towards the workload's node, for that address alone (/32, /128);
  - nothing while the route's gateway is unknown (no Node, no tunnel or underlay address of that family).
One destination, one route: a workload address outranks a block of the same CIDR, then the lowest node name
wins (two holders only happen mid-move, or with bad data).

Work follows the change: an affinity marks its block and that node's addresses inside it; a node marks its
blocks and its borrowed addresses (this host's own Node marks everything: the subnet test depends on it); a
workload marks its addresses; a pool marks what lies inside it. Each marked destination is recomputed from the
indexes at flush. Only addresses inside VXLAN pools are indexed, so a BGP-only cluster pays nothing per
workload beyond remembering its node and addresses.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Protocol, TypeVar

from calico.calculation.events import IPPoolUpdate, RouteKind, RouteUpdate
from calico.calculation.types import NodeInfo

__all__ = ["RouteResolver", "RouteSink"]

Network = IPv4Network | IPv6Network
K = TypeVar("K")
V = TypeVar("V")
VXLAN_MODES = frozenset({"Always", "CrossSubnet"})


class RouteSink(Protocol):
    """Where routes go, None meaning removed (`sequencer.Sequencer`)."""

    def route(self, dst: str, update: RouteUpdate | None) -> None: ...


@lru_cache(maxsize=65536)
def _network(cidr: str) -> Network:
    return ip_network(cidr, strict=False)


def _inside(inner: str, outer: Network) -> bool:
    net = _network(inner)
    return net.version == outer.version and net.subnet_of(outer)  # type: ignore[arg-type]


class RouteResolver:
    """See the module docstring."""

    def __init__(self, hostname: str, sink: RouteSink) -> None:
        self.hostname = hostname
        self._sink = sink
        self._vxlan_pools: dict[str, str] = {}  # cidr -> vxlanMode, VXLAN pools only
        self._nodes: dict[str, NodeInfo] = {}
        self._block_holders: dict[str, set[str]] = {}  # block -> nodes with a confirmed affinity
        self._node_blocks: dict[str, set[str]] = {}
        # Remote workloads: (node, *addresses) by id. One flat tuple each: there are thousands.
        self._workloads: dict[str, tuple[str, ...]] = {}
        # Remote workload addresses inside VXLAN pools: who has each, and each node's (with a count).
        self._claims: dict[str, set[str]] = {}
        self._node_claims: dict[str, dict[str, int]] = {}
        self._dirty: set[str] = set()

    # ---- inputs ------------------------------------------------------------------------------

    def pool(self, cidr: str, update: IPPoolUpdate | None) -> None:
        mode = update.vxlan_mode if update is not None and update.vxlan_mode in VXLAN_MODES else None
        if self._vxlan_pools.get(cidr) == mode:
            return
        if mode is None:
            del self._vxlan_pools[cidr]
        else:
            self._vxlan_pools[cidr] = mode
        net = _network(cidr)
        self._dirty.update(b for b in self._block_holders if _inside(b, net))
        for workload, (node, *nets) in self._workloads.items():
            for addr in nets:
                if _inside(addr, net):
                    self._set_claim(workload, node, addr, self._vxlan_mode(addr) is not None)
                    self._dirty.add(addr)  # its mode may have changed even if it stays claimed

    def update_node(self, name: str, info: NodeInfo | None) -> None:
        if info is None:
            self._nodes.pop(name, None)
        else:
            self._nodes[name] = info
        if name == self.hostname:
            self._dirty.update(self._block_holders)
            self._dirty.update(self._claims)
            return
        self._dirty.update(self._node_blocks.get(name, ()))
        self._dirty.update(self._node_claims.get(name, ()))

    def update_affinity(self, node: str, block: str, held: bool) -> None:
        holders = self._block_holders.get(block)
        if held == (holders is not None and node in holders):
            return
        if held:
            self._block_holders.setdefault(block, set()).add(node)
            self._node_blocks.setdefault(node, set()).add(block)
        else:
            _discard(self._block_holders, block, node)
            _discard(self._node_blocks, node, block)
        self._dirty.add(block)
        net = _network(block)
        self._dirty.update(a for a in self._node_claims.get(node, ()) if _inside(a, net))

    def update_workload(self, workload: str, node: str | None, nets: tuple[str, ...]) -> None:
        """A workload's node and addresses (node None: the workload is gone)."""
        new = (sys.intern(node), *nets) if node is not None and node != self.hostname else None
        old = self._workloads.get(workload)
        if old == new:
            return
        if old is not None:
            for addr in old[1:]:
                self._set_claim(workload, old[0], addr, False)
        if new is None:
            del self._workloads[workload]
            return
        self._workloads[workload] = new
        for addr in nets:
            self._set_claim(workload, new[0], addr, self._vxlan_mode(addr) is not None)

    def _set_claim(self, workload: str, node: str, addr: str, claimed: bool) -> None:
        holders = self._claims.get(addr)
        if claimed == (holders is not None and workload in holders):
            return
        counts = self._node_claims.setdefault(node, {})
        if claimed:
            self._claims.setdefault(addr, set()).add(workload)
            counts[addr] = counts.get(addr, 0) + 1
        else:
            _discard(self._claims, addr, workload)
            counts[addr] -= 1
            if not counts[addr]:
                del counts[addr]
            if not counts:
                del self._node_claims[node]
        self._dirty.add(addr)

    # ---- output ------------------------------------------------------------------------------

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for dst in dirty:
            self._sink.route(dst, self._route(dst))

    def _route(self, dst: str) -> RouteUpdate | None:
        best: tuple[int, str, str] | None = None
        for workload in self._claims.get(dst, ()):
            node = self._workloads[workload][0]
            if not self._in_own_block(node, dst):
                candidate = (0, node, workload)
                best = candidate if best is None else min(best, candidate)
        for node in self._block_holders.get(dst, ()):
            candidate = (1, node, "")
            best = candidate if best is None else min(best, candidate)
        if best is None:
            return None
        node = best[1]
        if node == self.hostname:
            return RouteUpdate(dst, node, None, RouteKind.LOCAL_BLOCK)
        mode = self._vxlan_mode(dst)
        info = self._nodes.get(node)
        if mode is None or info is None:
            return None
        version = _network(dst).version
        if mode == "CrossSubnet":
            theirs = info.underlay(version)
            mine = self._nodes.get(self.hostname)
            my_addr = mine.underlay(version) if mine is not None else None
            if theirs is not None and my_addr is not None and theirs.ip in my_addr.network:
                return RouteUpdate(dst, node, str(theirs.ip), RouteKind.DIRECT)
        tunnel = info.tunnel_address(version)
        return None if tunnel is None else RouteUpdate(dst, node, tunnel, RouteKind.VXLAN)

    def _vxlan_mode(self, addr: str) -> str | None:
        """The vxlanMode of the (longest) VXLAN pool holding `addr`, or None."""
        found: tuple[int, str] | None = None
        for cidr, mode in self._vxlan_pools.items():
            pool = _network(cidr)
            if _inside(addr, pool) and (found is None or pool.prefixlen > found[0]):
                found = (pool.prefixlen, mode)
        return None if found is None else found[1]

    def _in_own_block(self, node: str, addr: str) -> bool:
        return any(_inside(addr, _network(b)) for b in self._node_blocks.get(node, ()))

    # ---- queries (tests, debugging) ----------------------------------------------------------

    def routes(self) -> dict[str, RouteUpdate]:
        """Every route as it stands, computed afresh (tests compare it with what was sent)."""
        dsts = set(self._block_holders) | set(self._claims)
        return {dst: r for dst in dsts if (r := self._route(dst)) is not None}


def _discard(index: dict[K, set[V]], key: K, value: V) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(value)
        if not found:
            del index[key]

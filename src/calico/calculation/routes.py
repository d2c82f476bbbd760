"""Route resolver: pools, nodes, block affinities and remote workload addresses in; Felix's routes out.

Enters:
  - `pool(cidr, update)`: every IP pool (only the encapsulated ones matter here: vxlanMode or, for IPv4 pools,
    ipipMode Always / CrossSubnet; Felix programs their routes, BIRD leaves them out of the kernel);
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
    that family, DIRECT via that underlay address; inside an IP-in-IP pool: IPIP via the node's underlay IPv4
    address (CrossSubnet: DIRECT within this host's subnet, as for VXLAN);
  - a remote workload address inside an encapsulated pool but outside every block its own node holds
    (borrowed): the same, towards the workload's node, for that address alone (/32, /128);
  - nothing while the route's gateway is unknown (no Node, no tunnel or underlay address of that family).
One destination, one route: a workload address outranks a block of the same CIDR, then the lowest node name
wins (two holders only happen mid-move, or with bad data).

Work follows the change: an affinity marks its block and that node's addresses inside it; a node marks the
destinations that go to it (this host's own Node marks every routed destination: the subnet test depends on
it); a workload marks its addresses; a pool marks what lies inside it. Each marked destination is recomputed from the
indexes at flush. Only addresses inside encapsulated pools are indexed, so a BGP-only cluster pays nothing per
workload beyond remembering its node and addresses.
"""

from __future__ import annotations

import socket
import sys
from typing import Protocol, TypeVar

from calico.calculation.events import IPPoolUpdate, RouteKind, RouteUpdate
from calico.calculation.types import NodeInfo

__all__ = ["RouteResolver", "RouteSink"]

K = TypeVar("K")
V = TypeVar("V")
ENCAP_MODES = frozenset({"Always", "CrossSubnet"})
Encap = tuple[str, str]  # ("vxlan" | "ipip", the pool's mode for it: "Always" | "CrossSubnet")
Prefix = tuple[int, int, int]  # (IP version, network as an integer, prefix length)
_BITS = {4: 32, 6: 128}
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


class RouteSink(Protocol):
    """Where routes go, None meaning removed (`sequencer.Sequencer`)."""

    def route(self, dst: str, update: RouteUpdate | None) -> None: ...


def _prefix(cidr: str) -> Prefix:
    """A canonical CIDR (or address) as integers. Containment is then two shifts; `ipaddress` objects cost
    ~7x as much to build and, per workload address, too much memory to keep."""
    addr, _, length = cidr.partition("/")
    version = 6 if ":" in addr else 4
    bits = _BITS[version]
    plen = int(length) if length else bits
    value = int.from_bytes(socket.inet_pton(_FAMILY[version], addr), "big")
    return version, value >> (bits - plen) << (bits - plen), plen


def _within(inner: Prefix, outer: Prefix) -> bool:
    version, value, plen = inner
    if version != outer[0] or plen < outer[2]:
        return False
    shift = _BITS[version] - outer[2]
    return value >> shift == outer[1] >> shift


def _inside(inner: str, outer: Prefix) -> bool:
    return _within(_prefix(inner), outer)


class RouteResolver:
    """See the module docstring."""

    def __init__(self, hostname: str, sink: RouteSink) -> None:
        self.hostname = hostname
        self._sink = sink
        self._encap_pools: dict[str, tuple[Prefix, Encap]] = {}  # cidr -> (prefix, encapsulation); those only
        self._nodes: dict[str, NodeInfo] = {}
        self._block_holders: dict[str, set[str]] = {}  # block -> nodes with a confirmed affinity
        self._node_blocks: dict[str, dict[Prefix, str]] = {}
        # Per node, how many of its blocks have each (IP version, prefix length): an address is in one of its
        # blocks if its supernet at one of those lengths is one, whatever the number of blocks.
        self._node_block_sizes: dict[str, dict[tuple[int, int], int]] = {}
        # Remote workloads: (node, *addresses) by id. One flat tuple each: there are thousands.
        self._workloads: dict[str, tuple[str, ...]] = {}
        # Remote workload addresses inside VXLAN pools: who has each, and each node's (with a count).
        self._claims: dict[str, set[str]] = {}
        self._node_claims: dict[str, dict[str, int]] = {}
        # Which node each destination goes to, as of the last flush. Node addresses never change who wins, only
        # how to get there, so a node change marks just the destinations it won.
        self._winner: dict[str, str] = {}
        self._won: dict[str, set[str]] = {}
        self._dirty: set[str] = set()

    # ---- inputs ------------------------------------------------------------------------------

    def pool(self, cidr: str, update: IPPoolUpdate | None) -> None:
        mode = _pool_encap(update)
        net = _prefix(cidr)
        old = self._encap_pools.get(cidr)
        if (old[1] if old is not None else None) == mode:
            return
        if mode is None:
            del self._encap_pools[cidr]
        else:
            self._encap_pools[cidr] = (net, mode)
        self._dirty.update(b for b in self._block_holders if _inside(b, net))
        for workload, (node, *nets) in self._workloads.items():
            for addr in nets:
                if _inside(addr, net):
                    self._set_claim(workload, node, addr, self._encap(addr) is not None)
                    self._dirty.add(addr)  # its mode may have changed even if it stays claimed

    def update_node(self, name: str, info: NodeInfo | None) -> None:
        if info is None:
            self._nodes.pop(name, None)
        else:
            self._nodes[name] = info
        self._dirty.update(self._winner if name == self.hostname else self._won.get(name, ()))

    def update_affinity(self, node: str, block: str, held: bool) -> None:
        holders = self._block_holders.get(block)
        if held == (holders is not None and node in holders):
            return
        net = _prefix(block)
        size = (net[0], net[2])
        sizes = self._node_block_sizes.setdefault(node, {})
        blocks = self._node_blocks.setdefault(node, {})
        if held:
            self._block_holders.setdefault(block, set()).add(node)
            blocks[net] = block
            sizes[size] = sizes.get(size, 0) + 1
        else:
            _discard(self._block_holders, block, node)
            del blocks[net]
            sizes[size] -= 1
            if not sizes[size]:
                del sizes[size]
        if not sizes:
            del self._node_block_sizes[node], self._node_blocks[node]
        self._dirty.add(block)
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
            self._set_claim(workload, new[0], addr, self._encap(addr) is not None)

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
            node = self._best(dst)
            old = self._winner.get(dst)
            if old != node:
                if old is not None:
                    _discard(self._won, old, dst)
                if node is None:
                    del self._winner[dst]
                else:
                    self._winner[dst] = node
                    self._won.setdefault(node, set()).add(dst)
            self._sink.route(dst, None if node is None else self._route(dst, node))

    def _best(self, dst: str) -> str | None:
        """The node `dst` goes to: see the module docstring (one destination, one route)."""
        best: tuple[int, str, str] | None = None
        for workload in self._claims.get(dst, ()):
            node = self._workloads[workload][0]
            if not self._in_own_block(node, dst):
                candidate = (0, node, workload)
                best = candidate if best is None else min(best, candidate)
        for node in self._block_holders.get(dst, ()):
            candidate = (1, node, "")
            best = candidate if best is None else min(best, candidate)
        return None if best is None else best[1]

    def _route(self, dst: str, node: str) -> RouteUpdate | None:
        if node == self.hostname:
            return RouteUpdate(dst, node, None, RouteKind.LOCAL_BLOCK)
        found = self._encap(dst)
        info = self._nodes.get(node)
        if found is None or info is None:
            return None
        encap, mode = found
        version = _prefix(dst)[0]
        if mode == "CrossSubnet":
            theirs = info.underlay(version)
            mine = self._nodes.get(self.hostname)
            my_addr = mine.underlay(version) if mine is not None else None
            if theirs is not None and my_addr is not None and theirs.ip in my_addr.network:
                return RouteUpdate(dst, node, str(theirs.ip), RouteKind.DIRECT)
        if encap == "ipip":
            underlay = info.underlay(4) if version == 4 else None
            return None if underlay is None else RouteUpdate(dst, node, str(underlay.ip), RouteKind.IPIP)
        tunnel = info.tunnel_address(version)
        return None if tunnel is None else RouteUpdate(dst, node, tunnel, RouteKind.VXLAN)

    def _encap(self, addr: str) -> Encap | None:
        """The encapsulation of the (longest) encapsulated pool holding `addr`, or None."""
        if not self._encap_pools:
            return None
        prefix = _prefix(addr)
        found: tuple[int, Encap] | None = None
        for pool, mode in self._encap_pools.values():
            if _within(prefix, pool) and (found is None or pool[2] > found[0]):
                found = (pool[2], mode)
        return None if found is None else found[1]

    def _in_own_block(self, node: str, addr: str) -> bool:
        sizes = self._node_block_sizes.get(node)
        if not sizes:
            return False
        version, value, plen = _prefix(addr)
        blocks = self._node_blocks[node]
        for block_version, length in sizes:
            if block_version == version and length <= plen:
                shift = _BITS[version] - length
                if (version, value >> shift << shift, length) in blocks:
                    return True
        return False

    # ---- queries (tests, debugging) ----------------------------------------------------------

    def routes(self) -> dict[str, RouteUpdate]:
        """Every route as it stands, computed afresh (tests compare it with what was sent)."""
        routes = {}
        for dst in set(self._block_holders) | set(self._claims):
            node = self._best(dst)
            route = None if node is None else self._route(dst, node)
            if route is not None:
                routes[dst] = route
        return routes


def _pool_encap(update: IPPoolUpdate | None) -> Encap | None:
    """A pool's encapsulation; VXLAN wins should both be set (the datastore refuses that); IP-in-IP is IPv4's."""
    if update is None:
        return None
    if update.vxlan_mode in ENCAP_MODES:
        return "vxlan", update.vxlan_mode
    if update.ipip_mode in ENCAP_MODES and ":" not in update.cidr:
        return "ipip", update.ipip_mode
    return None


def _discard(index: dict[K, set[V]], key: K, value: V) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(value)
        if not found:
            del index[key]

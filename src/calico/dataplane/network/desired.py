"""What Felix's network between hosts should be: tunnel devices, neighbour and FDB entries, routes.

In: the `DataplaneConfig`, the dataplane's `DesiredState` (its `pools`, `vteps`, `routes`), the host's own
interfaces (`HostLink`s, read from the kernel) and which VTEPs, routes and pools changed. Out: the desired
`NetworkView`, and the keys of what changed in it (`Keys`), for the planner. Pure.

Rules (Calico's, per address family):
- VXLAN is on for a family when VXLANEnabled says so, or, left unset, when some pool of the family has a
  vxlanMode other than Never (IPv6 only with IPv6Support). Then, if this host's own VTEP (`VTEPUpdate.node ==
  config.hostname`) has that family, the device `vxlan.calico` (`vxlan-v6.calico`) exists: VNI, port from the
  config, `local` = this host's underlay address, on the interface holding it, learning off, its address the
  tunnel address (/32, /128), its MAC the VTEP's MAC, MTU = the host MTU - 50 (- 70) unless VXLANMTU
  (VXLANMTUV6) is set.
- every other node's VTEP of that family: a permanent neighbour entry (its tunnel address -> its MAC) and a
  static FDB entry (its MAC -> its underlay address) on the device. Two nodes claiming one entry (bad data):
  the smaller node name wins.
- routes: `vxlan` -> via the node's tunnel address, dev vxlan.calico, onlink; `direct` (CrossSubnet, same
  subnet) -> via the node's underlay address on the host interface whose subnet holds it; `ipip` -> via the
  node's underlay address, dev tunl0, onlink; `local_block` (a block this host holds) -> a blackhole, but only
  in pools whose encapsulation Felix programs (VXLAN or IP-in-IP, when on): BIRD's configuration keeps those
  pools out of the kernel, so nobody else would blackhole them, while BIRD blackholes every other pool's blocks.
  A route whose device or interface is missing is left out until it appears.
- IP-in-IP is on when IpInIpEnabled says so, or, left unset, when some IPv4 pool has an ipipMode other than
  Never: `tunl0` with MTU = host MTU - 20 unless IpInIpMtu is set, its address this host's
  `VTEPUpdate.ipip_addr` (/32) when it has one.

Work follows the change: a dirty VTEP recomputes that node's entries, a dirty route that destination, dirty
pools the local-block blackholes; what decides whole families (devices, which encapsulations are on, the host's
interfaces) recomputes everything when it changes, which is rare.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from typing import TypeVar

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.network.model import (
    IPIP_DEVICE,
    IPIP_OVERHEAD,
    VXLAN_DEVICE,
    VXLAN_OVERHEAD,
    Device,
    FdbKey,
    HostLink,
    Keys,
    NeighKey,
    NetRoute,
    NetworkView,
)
from calico.dataplane.network.mtu import host_mtu, tunnel_mtu, workload_mtu
from calico.dataplane.state import DesiredState

log = logging.getLogger(__name__)

K = TypeVar("K")
_HOST_BITS = {4: 32, 6: 128}


def version_of(cidr: str) -> int:
    return 6 if ":" in cidr else 4


def vxlan_on(config: DataplaneConfig, pools: Iterable[ev.IPPoolUpdate], version: int) -> bool:
    if version == 6 and not config.ipv6_support:
        return False
    if config.vxlan_enabled is not None:
        return config.vxlan_enabled
    return any(p.vxlan_mode != "Never" and version_of(p.cidr) == version for p in pools)


def ipip_on(config: DataplaneConfig, pools: Iterable[ev.IPPoolUpdate]) -> bool:
    if config.ipip_enabled is not None:
        return config.ipip_enabled
    return any(p.ipip_mode != "Never" and version_of(p.cidr) == 4 for p in pools)


def link_holding(links: Iterable[HostLink], address: str | None) -> HostLink | None:
    """The interface that holds `address` (this host's underlay address)."""
    if address is None:
        return None
    for link in links:
        if any(a.split("/")[0] == address for a in link.addresses):
            return link
    return None


def link_towards(links: Iterable[HostLink], gateway: str) -> HostLink | None:
    """The up interface whose connected subnet holds `gateway` (the longest such prefix)."""
    gw = ipaddress.ip_address(gateway)
    best: tuple[int, HostLink] | None = None
    for link in links:
        if not link.up:
            continue
        for a in link.addresses:
            net = ipaddress.ip_interface(a).network
            if net.version == gw.version and gw in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, link)
    return None if best is None else best[1]


def pool_of(dst: str, pools: Iterable[ev.IPPoolUpdate]) -> ev.IPPoolUpdate | None:
    """The (longest) pool holding `dst`."""
    net = ipaddress.ip_network(dst, strict=False)
    best: ev.IPPoolUpdate | None = None
    for pool in pools:
        p = ipaddress.ip_network(pool.cidr, strict=False)
        if p.version == net.version and net.subnet_of(p) and (  # type: ignore[arg-type]
            best is None or p.prefixlen > ipaddress.ip_network(best.cidr).prefixlen
        ):
            best = pool
    return best


def desired_devices(config: DataplaneConfig, state: DesiredState, links: tuple[HostLink, ...]) -> dict[str, Device]:
    own = state.vteps.get(config.hostname)
    pools = state.pools.values()
    devices: dict[str, Device] = {}
    for version in (4, 6):
        if own is None or not vxlan_on(config, pools, version):
            continue
        addr, parent_ip, mac = (
            (own.ipv4_addr, own.parent_ip, own.mac) if version == 4 else (own.ipv6_addr, own.parent_ip_v6, own.mac_v6)
        )
        if addr is None or parent_ip is None or mac is None:
            continue
        parent = link_holding(links, parent_ip)
        if parent is None:
            log.warning("no interface holds this host's address %s: %s waits for it", parent_ip, VXLAN_DEVICE[version])
            continue
        configured = config.vxlan_mtu if version == 4 else config.vxlan_mtu_v6
        name = VXLAN_DEVICE[version]
        devices[name] = Device(
            name, "vxlan", tunnel_mtu(host_mtu(links, config.mtu_iface_pattern, parent), VXLAN_OVERHEAD[version],
                                      configured),
            frozenset({f"{addr}/{_HOST_BITS[version]}"}), mac=mac.lower(), vni=config.vxlan_vni,
            port=config.vxlan_port, local=parent_ip, parent=parent.name,
        )
    if ipip_on(config, pools):
        underlay = link_holding(links, own.parent_ip if own is not None else None)
        addr = own.ipip_addr if own is not None else None
        devices[IPIP_DEVICE] = Device(
            IPIP_DEVICE, "ipip", tunnel_mtu(host_mtu(links, config.mtu_iface_pattern, underlay), IPIP_OVERHEAD,
                                            config.ipip_mtu),
            frozenset({f"{addr}/32"}) if addr else frozenset(),
        )
    return devices


def node_entries(vtep: ev.VTEPUpdate, devices: Mapping[str, Device]
                 ) -> tuple[dict[NeighKey, str], dict[FdbKey, str]]:
    """Another node's neighbour and FDB entries on this host's VXLAN devices."""
    neigh: dict[NeighKey, str] = {}
    fdb: dict[FdbKey, str] = {}
    for version, tunnel, mac, parent in (
        (4, vtep.ipv4_addr, vtep.mac, vtep.parent_ip),
        (6, vtep.ipv6_addr, vtep.mac_v6, vtep.parent_ip_v6),
    ):
        dev = VXLAN_DEVICE[version]
        if dev in devices and tunnel and mac and parent:
            neigh[(dev, tunnel)] = mac.lower()
            fdb[(dev, mac.lower())] = parent
    return neigh, fdb


def route_for(update: ev.RouteUpdate, config: DataplaneConfig, state: DesiredState, devices: Mapping[str, Device],
              links: tuple[HostLink, ...]) -> NetRoute | None:
    dst = str(ipaddress.ip_network(update.dst, strict=False))
    version = version_of(dst)
    match update.kind:
        case ev.RouteKind.VXLAN | ev.RouteKind.IPIP:
            dev = VXLAN_DEVICE[version] if update.kind is ev.RouteKind.VXLAN else IPIP_DEVICE
            if dev not in devices or update.gateway is None:
                return None
            return NetRoute(dst, gateway=update.gateway, dev=dev, onlink=True)
        case ev.RouteKind.DIRECT:
            if update.gateway is None or not vxlan_on(config, state.pools.values(), version):
                return None
            link = link_towards(links, update.gateway)
            if link is None:
                log.warning("route %s: no interface reaches %s directly; left out", dst, update.gateway)
                return None
            return NetRoute(dst, gateway=update.gateway, dev=link.name)
        case ev.RouteKind.LOCAL_BLOCK:
            pool = pool_of(dst, state.pools.values())
            if pool is None:
                return None
            ours = (pool.vxlan_mode != "Never" and vxlan_on(config, state.pools.values(), version)) or (
                pool.ipip_mode != "Never" and ipip_on(config, state.pools.values()))
            return NetRoute(dst, type="blackhole") if ours else None
    return None


class DesiredNetwork:
    """The desired `NetworkView`, kept current from the desired state by what changed (module docstring)."""

    def __init__(self, config: DataplaneConfig) -> None:
        self.config = config
        self.view = NetworkView()
        self._links: tuple[HostLink, ...] = ()
        self._families: tuple[object, ...] = ()  # what decides whole families; a change recomputes everything
        self._by_node: dict[str, tuple[dict[NeighKey, str], dict[FdbKey, str]]] = {}
        self._neigh_owners: dict[NeighKey, dict[str, str]] = {}
        self._fdb_owners: dict[FdbKey, dict[str, str]] = {}
        self._local_blocks: set[str] = set()  # destinations of LOCAL_BLOCK routes (pools decide them)
        self._dst_of: dict[str, str] = {}  # a route's canonical CIDR -> the destination as the state spells it
        self.workload_mtu: int | None = None  # the MTU workloads should use (the MTU file), once links are known

    def update(self, state: DesiredState, links: tuple[HostLink, ...], vteps: Iterable[str] = (),
               routes: Iterable[str] = (), pools: bool = False) -> Keys:
        """Recompute what the named VTEPs, routes (and, with `pools`, the pools) decide; returns what changed."""
        changed = Keys()
        devices = desired_devices(self.config, state, links)
        families = (
            tuple(sorted((n, d.kind) for n, d in devices.items())),
            vxlan_on(self.config, state.pools.values(), 4), vxlan_on(self.config, state.pools.values(), 6),
            ipip_on(self.config, state.pools.values()),
        )
        for name in set(devices) | set(self.view.devices):
            if devices.get(name) != self.view.devices.get(name):
                changed.devices.add(name)
        self.view.devices = devices
        if links:
            own = state.vteps.get(self.config.hostname)
            underlay = link_holding(links, (own.parent_ip or own.parent_ip_v6) if own is not None else None)
            self.workload_mtu = workload_mtu(host_mtu(links, self.config.mtu_iface_pattern, underlay),
                                             devices.values())
        if families != self._families or links != self._links:
            self._families, self._links = families, links
            vteps = set(state.vteps) | set(self._by_node)
            routes = set(state.routes) | {self._dst_of[k] for k in self.view.routes}
        elif pools:
            routes = set(routes) | self._local_blocks
        for node in vteps:
            self._node(state, node, changed)
        for dst in routes:
            self._route(state, dst, changed)
        return changed

    def _node(self, state: DesiredState, node: str, changed: Keys) -> None:
        vtep = state.vteps.get(node)
        new = node_entries(vtep, self.view.devices) if vtep is not None and node != self.config.hostname else ({}, {})
        old = self._by_node.pop(node, ({}, {}))
        if new[0] or new[1]:
            self._by_node[node] = new
        for nk in set(old[0]) | set(new[0]):
            if _settle(self._neigh_owners, self.view.neighbours, nk, node, new[0].get(nk)):
                changed.neighbours.add(nk)
        for fk in set(old[1]) | set(new[1]):
            if _settle(self._fdb_owners, self.view.fdb, fk, node, new[1].get(fk)):
                changed.fdb.add(fk)

    def _route(self, state: DesiredState, dst: str, changed: Keys) -> None:
        update = state.routes.get(dst)
        key = str(ipaddress.ip_network(dst, strict=False))
        if update is not None and update.kind is ev.RouteKind.LOCAL_BLOCK:
            self._local_blocks.add(dst)
        else:
            self._local_blocks.discard(dst)
        route = None if update is None else route_for(update, self.config, state, self.view.devices, self._links)
        if self.view.routes.get(key) == route:
            return
        if route is None:
            del self.view.routes[key]
            del self._dst_of[key]
        else:
            self.view.routes[key] = route
            self._dst_of[key] = dst
        changed.routes.add(key)


def _settle(owners: dict[K, dict[str, str]], view: dict[K, str], key: K, node: str, value: str | None) -> bool:
    """Record `node`'s claim on `key` (None: none) and give the view the smallest node's value; True if it
    changed."""
    claims = owners.setdefault(key, {})
    if value is None:
        claims.pop(node, None)
    else:
        claims[node] = value
    if not claims:
        del owners[key]
    want = claims[min(claims)] if claims else None
    if view.get(key) == want:
        return False
    if want is None:
        del view[key]
    else:
        view[key] = want
    return True

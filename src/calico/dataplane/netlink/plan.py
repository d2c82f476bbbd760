"""Pure route planning for workload interfaces: what routes the host should have, and what to change.

In: desired workload endpoints (`WorkloadEndpointUpdate`: iface + ipv4/ipv6 nets and NATs), the interfaces the kernel
reports (`Link`: name, index, oper state) and the routes of ours the kernel holds (`dst -> ifindex`, read back
by protocol number). Out: a `RoutePlan`: routes to add/replace, routes to delete, interfaces whose per-interface
sysctls still need writing and addresses whose conntrack entries must go.

Rules:
- a route `dst -> iface` is desired while an endpoint lists `dst` (one of its addresses, or the external
  address of one of its 1:1 NATs), its iface matches an interface prefix, exists and is oper-up. When two
  endpoints claim one `dst`, the smallest endpoint id wins (deterministic).
- before in-sync, only routes for destinations this run has known are deleted; routes of ours for unknown
  destinations (leftovers from a previous run) stay until `plan(in_sync=True)`, so a restarting agent never
  cuts traffic for endpoints the datastore has not re-sent yet.
- an address's conntrack entries are flushed when no endpoint lists it any more (and when a leftover route
  is removed after in-sync).
- work is proportional to the change: only destinations marked dirty are planned, unless `full=True`.

No I/O. `RouteManager` (routes.py) owns one planner and applies its plans through netlink.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from calico.calculation.events import WorkloadEndpointID, WorkloadEndpointUpdate


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    index: int
    oper_up: bool


@dataclass(slots=True)
class RoutePlan:
    add: dict[str, int] = field(default_factory=dict)  # dst -> ifindex ("replace": also moves a route)
    delete: dict[str, int] = field(default_factory=dict)  # dst -> ifindex it currently points at
    configure: dict[str, int] = field(default_factory=dict)  # iface name -> ifindex needing sysctls
    flush_conntrack: set[str] = field(default_factory=set)  # single addresses, "198.18.1.2" / "fd00::2"

    def __bool__(self) -> bool:
        return bool(self.add or self.delete or self.configure or self.flush_conntrack)


def normalise(net: str) -> str:
    """Canonical CIDR text, so "fd00:0::2/128" and "fd00::2/128" are one key. A bare address is a host net."""
    return str(ipaddress.ip_network(net, strict=False))


def host_address(dst: str) -> str | None:
    """The single address of a /32 or /128, else None (conntrack flushes are per address)."""
    net = ipaddress.ip_network(dst)
    return str(net.network_address) if net.num_addresses == 1 else None


class RoutePlanner:
    def __init__(self, interface_prefixes: Iterable[str] = ("cali",)) -> None:
        self.prefixes = tuple(interface_prefixes)
        self.endpoints: dict[WorkloadEndpointID, WorkloadEndpointUpdate] = {}
        self.links: dict[str, Link] = {}
        self.kernel: dict[str, int] = {}  # our routes as last read back or written: dst -> ifindex
        self.in_sync = False
        self._owners: dict[str, set[WorkloadEndpointID]] = {}  # dst -> endpoints listing it
        self._by_iface: dict[str, set[WorkloadEndpointID]] = {}
        self._known: set[str] = set()  # every dst an endpoint listed during this run
        self._configured: dict[str, int] = {}  # iface -> ifindex whose sysctls were written
        self._dirty: set[str] = set()
        self._dirty_ifaces: set[str] = set()
        self._gone_addrs: set[str] = set()

    # --- inputs ---------------------------------------------------------------------------------------

    def matches_prefix(self, iface: str) -> bool:
        return iface.startswith(self.prefixes)

    def set_endpoint(self, ep: WorkloadEndpointUpdate) -> None:
        old = self.endpoints.get(ep.endpoint_id)
        if old == ep:
            return
        if old is not None:
            self._unindex(old)
        self.endpoints[ep.endpoint_id] = ep
        for dst in _dsts(ep):
            self._owners.setdefault(dst, set()).add(ep.endpoint_id)
            self._known.add(dst)
            self._dirty.add(dst)
            if addr := host_address(dst):
                self._gone_addrs.discard(addr)  # back before the flush ran: its flows stay
        self._by_iface.setdefault(ep.iface, set()).add(ep.endpoint_id)
        self._dirty_ifaces.add(ep.iface)

    def remove_endpoint(self, eid: WorkloadEndpointID) -> None:
        old = self.endpoints.pop(eid, None)
        if old is not None:
            self._unindex(old)

    def set_endpoints(self, endpoints: Iterable[WorkloadEndpointUpdate]) -> None:
        """Replace the whole desired set; only endpoints that changed mark anything dirty."""
        new = {ep.endpoint_id: ep for ep in endpoints}
        for eid in [e for e in self.endpoints if e not in new]:
            self.remove_endpoint(eid)
        for ep in new.values():
            self.set_endpoint(ep)

    def set_link(self, link: Link) -> None:
        old = self.links.get(link.name)
        if old == link:
            return
        if old is not None and old.index != link.index:
            self._forget_ifindex(old.index)  # re-created interface: the kernel dropped the old routes
            self._configured.pop(link.name, None)
        self.links[link.name] = link
        self._mark_iface(link.name)

    def remove_link(self, name: str, index: int | None = None) -> None:
        old = self.links.get(name)
        if old is None or (index is not None and old.index != index):
            return
        del self.links[name]
        self._configured.pop(name, None)
        self._forget_ifindex(old.index)  # the kernel deletes a vanished device's routes itself
        self._mark_iface(name)

    def set_links(self, links: Iterable[Link]) -> None:
        """Replace the whole link table (after a dump)."""
        new = {link.name: link for link in links}
        for name in [n for n in self.links if n not in new]:
            self.remove_link(name)
        for link in new.values():
            self.set_link(link)

    def set_kernel_routes(self, routes: dict[str, int]) -> None:
        """Replace our view of the kernel's routes (after a read-back); everything becomes worth re-checking."""
        self.kernel = dict(routes)
        self._dirty |= set(routes)

    # --- outputs --------------------------------------------------------------------------------------

    def desired_ifindex(self, dst: str) -> int | None:
        owners = self._owners.get(dst)
        if not owners:
            return None
        ep = self.endpoints[min(owners)]
        link = self.links.get(ep.iface)
        if link is None or not link.oper_up or not self.matches_prefix(ep.iface):
            return None
        return link.index

    def desired_routes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for dst in self._owners:
            idx = self.desired_ifindex(dst)
            if idx is not None:
                out[dst] = idx
        return out

    def iface_status(self, iface: str) -> str:
        link = self.links.get(iface)
        return "up" if link is not None and link.oper_up else "down"

    def plan(self, full: bool = False) -> RoutePlan:
        """The changes to make now. Call `applied()` with the outcome (a plan not applied: `applied(plan,
        failed_routes=all, failed_ifaces=all)` puts its work back)."""
        plan = RoutePlan()
        # Take the dirty marks now: changes arriving while this plan is applied (the caller awaits the kernel)
        # mark afresh and are not lost when `applied()` records the outcome.
        dirty, self._dirty = self._dirty, set()
        dirty_ifaces, self._dirty_ifaces = self._dirty_ifaces, set()
        dsts = (set(self._owners) | set(self.kernel) | dirty) if full else dirty
        for dst in dsts:
            want = self.desired_ifindex(dst)
            have = self.kernel.get(dst)
            if want is not None and want != have:
                plan.add[dst] = want
            elif want is None and have is not None and (self.in_sync or dst in self._known):
                plan.delete[dst] = have
                if dst not in self._owners and (addr := host_address(dst)):
                    plan.flush_conntrack.add(addr)  # leftover or dropped address: its flows must not linger
        ifaces = (set(self._by_iface) | dirty_ifaces) if full else dirty_ifaces
        for iface in ifaces:
            link = self.links.get(iface)
            if (
                link is not None
                and self._by_iface.get(iface)
                and self.matches_prefix(iface)
                and self._configured.get(iface) != link.index
            ):
                plan.configure[iface] = link.index
        plan.flush_conntrack |= self._gone_addrs
        return plan

    def applied(
        self,
        plan: RoutePlan,
        failed_routes: Iterable[str] = (),
        failed_ifaces: Iterable[str] = (),
        conntrack_done: bool = True,
    ) -> None:
        """Record what reached the kernel; failures stay dirty and are retried by the next plan."""
        failed = set(failed_routes)
        for dst, idx in plan.add.items():
            if dst not in failed:
                self.kernel[dst] = idx
        for dst in plan.delete:
            if dst not in failed:
                self.kernel.pop(dst, None)
        bad_ifaces = set(failed_ifaces)
        for iface, idx in plan.configure.items():
            if iface not in bad_ifaces:
                self._configured[iface] = idx
        self._dirty |= failed & (set(plan.add) | set(plan.delete))
        self._dirty_ifaces |= bad_ifaces & set(plan.configure)
        if conntrack_done:
            self._gone_addrs -= plan.flush_conntrack

    # --- internals ------------------------------------------------------------------------------------

    def _unindex(self, ep: WorkloadEndpointUpdate) -> None:
        eid = ep.endpoint_id
        for dst in _dsts(ep):
            owners = self._owners.get(dst)
            if owners is None:
                continue
            owners.discard(eid)
            self._dirty.add(dst)
            if not owners:
                del self._owners[dst]
                if addr := host_address(dst):
                    self._gone_addrs.add(addr)
        users = self._by_iface.get(ep.iface)
        if users is not None:
            users.discard(eid)
            if not users:
                del self._by_iface[ep.iface]
        self._dirty_ifaces.add(ep.iface)

    def _mark_iface(self, iface: str) -> None:
        self._dirty_ifaces.add(iface)
        for eid in self._by_iface.get(iface, ()):
            self._dirty |= set(_dsts(self.endpoints[eid]))

    def _forget_ifindex(self, index: int) -> None:
        for dst in [d for d, i in self.kernel.items() if i == index]:
            del self.kernel[dst]
            self._dirty.add(dst)


def _dsts(ep: WorkloadEndpointUpdate) -> list[str]:
    """The endpoint's own addresses and its floating IPs: a NAT's external address is routed to the workload's
    interface like its own, so BIRD learns it from the kernel and announces it (as Calico does)."""
    nats = [f"{n.external_ip}/{32 if ':' not in n.external_ip else 128}" for n in (*ep.ipv4_nats, *ep.ipv6_nats)]
    return [normalise(n) for n in (*ep.ipv4_nets, *ep.ipv6_nets, *nats)]

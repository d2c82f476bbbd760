"""The workload route and interface manager: keeps one namespace's routes in line with the local endpoints.

In: the desired workload endpoints (`WorkloadEndpointUpdate`s, whole via `update()` or one by one) and the
kernel's own news about interfaces (RTM_NEWLINK / RTM_DELLINK on RTNLGRP_LINK, in the namespace). Out, in
that namespace only: a `scope link` route per endpoint address (/32, /128) to its interface while the
interface exists and is oper-up, tagged with protocol `RTPROT_CALICO` (80) so read-back can tell ours from
everyone else's (of the protocol-80 routes, only those on workload interfaces: the rest, tunnels, blackholes
and routes to other hosts, belong to `calico.dataplane.network`, so neither deletes the other's); Calico's
per-interface sysctls (commands.interface_sysctls); conntrack entries of an address deleted when the address
goes away. `endpoint_status()` reports each endpoint's interface as up/down.

Lifecycle: `start()` opens two netlink sockets in the namespace (one for requests, one subscribed to link
events, so replies and news never mix), reads back links and our routes (no flush), then installs what the
endpoints it is given need. Until `reconcile()` (call it at in-sync) routes of ours for endpoints it has
never heard of are left alone; `reconcile()` removes them. `refresh()` (also every `refresh_interval` s)
re-reads the kernel and repairs drift. `stop()` leaves every route in place: a restart must not cut traffic.

Concurrency: everything runs on the caller's event loop. pyroute2's `AsyncIPRoute` talks netlink through
non-blocking sockets (the only blocking step is the short fork that opens a socket in the namespace, once,
in `start()`); sysctls and conntrack run as batched subprocesses (commands.py). No threads, so no shared
state; one asyncio lock serialises applying plans.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK

from calico.calculation.events import WorkloadEndpointID, WorkloadEndpointUpdate
from calico.dataplane.netlink import commands
from calico.dataplane.netlink.plan import Link, RoutePlan, RoutePlanner, normalise

log = logging.getLogger(__name__)

# Unassigned in iproute2's rt_protos (4 static, 12 bird, 186 bgp ...): routes carrying it are ours. BIRD's
# kernel protocol must export (not learn) these; `ip route show proto 80` lists them.
RTPROT_CALICO = 80
RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255  # in a delete request: match any scope
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
RETRY_DELAY = 1.0  # after a failed netlink request or sysctl: the next attempt


def link_from_msg(msg: Any) -> Link | None:
    name = msg.get("IFLA_IFNAME")
    if not name:
        return None
    state = msg.get("IFLA_OPERSTATE")
    flags = msg["flags"]
    # Oper-up; a tap device without carrier reporting reports UNKNOWN, so fall back to the flags there.
    up = state == "UP" or (state == "UNKNOWN" and bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP))
    return Link(name=name, index=msg["index"], oper_up=up)


def _family(dst: str) -> int:
    return socket.AF_INET6 if ":" in dst else socket.AF_INET


class RouteManager:
    def __init__(
        self,
        netns: str | None,
        interface_prefixes: Iterable[str] = ("cali",),
        *,
        route_protocol: int = RTPROT_CALICO,
        refresh_interval: float = 90.0,
        flush_conntrack: bool = True,
        route_localnet: bool = False,
    ) -> None:
        self.netns = netns
        self.route_localnet = route_localnet  # see commands.interface_sysctls
        self.route_protocol = route_protocol
        self.refresh_interval = refresh_interval
        self.flush_conntrack = flush_conntrack
        self._planner = RoutePlanner(interface_prefixes)
        self._names: dict[int, str] = {}  # ifindex -> name, to notice renames
        self._lock = asyncio.Lock()
        self._req: AsyncIPRoute | None = None
        self._mon: AsyncIPRoute | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._needs_retry = False
        self.applied_plans = 0  # for tests and metrics

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        # flags=0: never create the namespace if it is missing (pyroute2's default would).
        self._mon = AsyncIPRoute(netns=self.netns, groups=0, flags=0)
        self._req = AsyncIPRoute(netns=self.netns, groups=0, flags=0)
        await self._mon.bind(groups=RTMGRP_LINK)  # subscribe before the dump, so no change falls in between
        async with self._lock:
            await self._read_back()
            await self._apply_locked(full=True)
        self._tasks = [asyncio.create_task(self._monitor()), asyncio.create_task(self._periodic())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        for sock in (self._mon, self._req):
            if sock is not None:
                sock.close()
        self._mon = self._req = None

    async def __aenter__(self) -> RouteManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- desired state --------------------------------------------------------------------------------

    async def update(self, endpoints: Mapping[WorkloadEndpointID, WorkloadEndpointUpdate]) -> None:
        """Make `endpoints` the whole desired set (e.g. `DesiredState.endpoints`); applies only what changed."""
        self._planner.set_endpoints(endpoints.values())
        await self.apply()

    async def on_endpoint_update(self, ep: WorkloadEndpointUpdate) -> None:
        self._planner.set_endpoint(ep)
        await self.apply()

    async def on_endpoint_remove(self, eid: WorkloadEndpointID) -> None:
        self._planner.remove_endpoint(eid)
        await self.apply()

    async def reconcile(self) -> None:
        """In sync with the datastore: from now on routes of ours that no endpoint wants are removed."""
        self._planner.in_sync = True
        async with self._lock:
            await self._apply_locked(full=True)

    async def refresh(self) -> None:
        """Re-read links and our routes from the kernel and repair whatever drifted."""
        async with self._lock:
            await self._read_back()
            await self._apply_locked(full=True)

    async def apply(self) -> None:
        async with self._lock:
            await self._apply_locked(full=False)

    def endpoint_status(self) -> dict[WorkloadEndpointID, str]:
        """"up" when the endpoint's interface exists and is oper-up, else "down"."""
        return {eid: self._planner.iface_status(ep.iface) for eid, ep in self._planner.endpoints.items()}

    def routes(self) -> dict[str, int]:
        """Our routes as this manager believes the kernel holds them: dst -> ifindex."""
        return dict(self._planner.kernel)

    # --- kernel I/O -----------------------------------------------------------------------------------

    def _sock(self) -> AsyncIPRoute:
        if self._req is None:
            raise RuntimeError("RouteManager not started")
        return self._req

    async def _read_back(self) -> None:
        ipr = self._sock()
        links: list[Link] = []
        self._names.clear()
        async for msg in await ipr.link("dump"):
            link = link_from_msg(msg)
            if link is not None and self._planner.matches_prefix(link.name):
                links.append(link)
                self._names[link.index] = link.name
        routes: dict[str, int] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            async for msg in await ipr.route("dump", family=family):
                if msg["proto"] != self.route_protocol or msg.get("RTA_TABLE", msg["table"]) != RT_TABLE_MAIN:
                    continue
                dst, oif = msg.get("RTA_DST"), msg.get("RTA_OIF")
                # Only routes on workload interfaces are ours: the other protocol-80 routes (tunnels, blackholes,
                # routes to other hosts) are calico.dataplane.network's.
                if dst is not None and oif in self._names:
                    routes[normalise(f"{dst}/{msg['dst_len']}")] = oif
        self._planner.set_links(links)
        self._planner.set_kernel_routes(routes)

    async def _apply_locked(self, full: bool) -> None:
        plan = self._planner.plan(full=full)
        if not plan:
            return
        try:
            failed_ifaces: set[str] = set()
            if plan.configure:  # before routes: proxy ARP must answer once traffic can arrive
                failed_ifaces = await commands.write_sysctls(self.netns, plan.configure, self.route_localnet)
            failed_routes = await self._apply_routes(plan)
            conntrack_ok = True
            if plan.flush_conntrack and self.flush_conntrack:
                conntrack_ok = await commands.flush_conntrack(self.netns, plan.flush_conntrack)
        except BaseException:
            # Socket trouble or cancellation: put the whole plan back so the next attempt redoes it.
            self._planner.applied(plan, {*plan.add, *plan.delete}, set(plan.configure), conntrack_done=False)
            self._needs_retry = True
            raise
        self._planner.applied(plan, failed_routes, failed_ifaces, conntrack_ok)
        self._needs_retry = bool(failed_routes or failed_ifaces or not conntrack_ok)
        self.applied_plans += 1
        log.debug(
            "routes in %s: +%d -%d, sysctls for %d ifaces, conntrack flush %d, failed %d",
            self.netns, len(plan.add), len(plan.delete), len(plan.configure), len(plan.flush_conntrack),
            len(failed_routes) + len(failed_ifaces),
        )

    async def _apply_routes(self, plan: RoutePlan) -> set[str]:
        ipr = self._sock()
        failed: set[str] = set()
        for dst, idx in plan.delete.items():
            try:
                await ipr.route(
                    "del", dst=dst, oif=idx, family=_family(dst), table=RT_TABLE_MAIN, proto=self.route_protocol,
                    scope=RT_SCOPE_NOWHERE,
                )
            except NetlinkError as e:
                if e.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):  # already gone is what we wanted
                    log.warning("deleting route %s in %s: %s", dst, self.netns, e)
                    failed.add(dst)
        for dst, idx in plan.add.items():
            fam = _family(dst)
            scope = {"scope": RT_SCOPE_LINK} if fam == socket.AF_INET else {}
            try:
                await ipr.route(
                    "replace", dst=dst, oif=idx, family=fam, table=RT_TABLE_MAIN, proto=self.route_protocol, **scope
                )
            except NetlinkError as e:
                # ENODEV: the interface vanished meanwhile; the link monitor will say so and the plan drops it.
                log.info("adding route %s via ifindex %d in %s: %s", dst, idx, self.netns, e)
                failed.add(dst)
        return failed

    # --- background tasks -----------------------------------------------------------------------------

    def _on_link_msg(self, msg: Any) -> None:
        link = link_from_msg(msg)
        if link is None:
            return
        kind = msg["header"]["type"]
        old_name = self._names.get(link.index)
        if old_name is not None and (old_name != link.name or kind == RTM_DELLINK):
            self._planner.remove_link(old_name, link.index)
            del self._names[link.index]
        if kind == RTM_NEWLINK and self._planner.matches_prefix(link.name):
            self._planner.set_link(link)
            self._names[link.index] = link.name

    async def _monitor(self) -> None:
        assert self._mon is not None
        while True:
            try:
                async for msg in self._mon.get():
                    self._on_link_msg(msg)
                await self.apply()
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. a lost event (socket overrun): re-read everything rather than guess
                log.exception("link monitor in %s failed; resyncing", self.netns)
                await asyncio.sleep(RETRY_DELAY)
                with contextlib.suppress(Exception):
                    await self.refresh()

    async def _periodic(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh_interval
        while True:
            delay = next_refresh - loop.time()
            if self._needs_retry:
                delay = min(delay, RETRY_DELAY)
            await asyncio.sleep(max(0.0, delay))
            try:
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh_interval
                    await self.refresh()
                elif self._needs_retry:
                    await self.apply()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("route refresh in %s failed", self.netns)
                self._needs_retry = True

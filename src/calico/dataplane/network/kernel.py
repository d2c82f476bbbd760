"""The one home of netlink for Felix's network between hosts: read it back, apply plans, in one namespace.

In: a network namespace name (None: this process's own), the workload interface prefixes (whose routes are
the `netlink.RouteManager`'s, never ours), and `diff.NetPlan`s. Out: the kernel's tunnel devices, neighbour
and FDB entries and protocol-80 routes, and `read()`: those of them that are Felix's, as a `NetworkView`,
plus the host's other interfaces (`HostLink`s: the underlay, MTUs).

What is ours (read back, and deleted when not desired):
  - the devices `vxlan.calico`, `vxlan-v6.calico`, `tunl0` (by name);
  - permanent neighbour entries and FDB entries with a destination on those devices;
  - routes of protocol 80 in the main table that are not on a workload interface: blackholes, routes through
    our devices, and CrossSubnet routes via another host's address. A protocol-80 route whose device matches
    a workload prefix is the RouteManager's; it reads back only those. So the two never delete each other's
    routes (and their destinations never overlap: workload /32s are local, ours are other hosts' blocks and
    this host's blocks).

`apply(plan)` runs a plan in its order on one netlink socket (requests go out one after the other without a
process spawn each) and returns the keys that failed; a delete of something already gone counts as done.
Kernel errors never escape as exceptions, except a broken socket (the caller re-reads and retries).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import ndmsg, rt_type

from calico.dataplane.network.diff import NetPlan
from calico.dataplane.network.model import (
    FELIX_DEVICES,
    VXLAN_DEVICE,
    Device,
    HostLink,
    Keys,
    NetRoute,
    NetworkView,
)

log = logging.getLogger(__name__)

RTPROT_CALICO = 80
RT_TABLE_MAIN = 254
RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE = 0
IFF_UP = 0x1
NUD_PERMANENT = ndmsg.states["permanent"]
NTF_SELF = ndmsg.flags["self"]
_GONE = (errno.ESRCH, errno.ENOENT, errno.ENODEV, errno.EADDRNOTAVAIL)
_ROUTE_TYPE_NAMES = {k: v for k, v in rt_type.items() if isinstance(k, int)}  # number -> name


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _route_type(msg: Any) -> str:
    return _ROUTE_TYPE_NAMES.get(msg["type"], "unspec")


class NetlinkKernel:
    """See the module docstring. `open()` before use, `close()` after."""

    def __init__(self, netns: str | None, interface_prefixes: tuple[str, ...] = ("cali",)) -> None:
        self.netns = netns
        self.prefixes = interface_prefixes
        self._ipr: AsyncIPRoute | None = None
        self._index: dict[str, int] = {}  # interface name -> ifindex, as last read or made

    async def open(self) -> None:
        # flags=0: never create the namespace if it is missing (pyroute2's default would).
        self._ipr = AsyncIPRoute(netns=self.netns, groups=0, flags=0)

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _sock(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise RuntimeError("NetlinkKernel not opened")
        return self._ipr

    # --- reading ----------------------------------------------------------------------------------------

    async def read(self) -> tuple[NetworkView, tuple[HostLink, ...]]:
        ipr = self._sock()
        raw_links = [m async for m in await ipr.link("dump")]
        addrs: dict[int, list[str]] = {}
        async for m in await ipr.addr("dump"):
            if m["scope"] == RT_SCOPE_UNIVERSE:
                addrs.setdefault(m["index"], []).append(f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}")
        names = {m["index"]: m.get("IFLA_IFNAME", "") for m in raw_links}
        self._index = {n: i for i, n in names.items()}
        view = NetworkView()
        links: list[HostLink] = []
        for m in raw_links:
            name, index = names[m["index"]], m["index"]
            up = bool(m["flags"] & IFF_UP)
            if name in FELIX_DEVICES:
                view.devices[name] = _device(m, name, up, frozenset(addrs.get(index, ())), names)
            elif not name.startswith(self.prefixes):
                links.append(HostLink(name, index, m.get("IFLA_MTU") or 0, up, tuple(addrs.get(index, ()))))
        ours = {self._index[n]: n for n in FELIX_DEVICES if n in self._index}
        async for m in await ipr.neigh("dump"):
            dev = ours.get(m["ifindex"])
            if dev is not None and m["state"] & NUD_PERMANENT and m.get("NDA_DST") and m.get("NDA_LLADDR"):
                view.neighbours[(dev, m.get("NDA_DST"))] = m.get("NDA_LLADDR").lower()
        async for m in await ipr.fdb("dump"):
            dev = ours.get(m["ifindex"])
            if dev is not None and m.get("NDA_DST") and m.get("NDA_LLADDR"):
                view.fdb[(dev, m.get("NDA_LLADDR").lower())] = m.get("NDA_DST")
        for family in (socket.AF_INET, socket.AF_INET6):
            async for m in await ipr.route("dump", family=family):
                route = self._our_route(m, names)
                if route is not None:
                    view.routes[route.dst] = route
        return view, tuple(links)

    def _our_route(self, m: Any, names: dict[int, str]) -> NetRoute | None:
        if m["proto"] != RTPROT_CALICO or m.get("RTA_TABLE", m["table"]) != RT_TABLE_MAIN:
            return None
        dst = str(ipaddress.ip_network(f"{m.get('RTA_DST') or ('::' if m['family'] == socket.AF_INET6 else '0.0.0.0')}"
                                       f"/{m['dst_len']}"))
        kind = _route_type(m)
        if kind != "unicast":
            return NetRoute(dst, type=kind)  # a blackhole, or an odd type: not what we want, so replaced
        dev = names.get(m.get("RTA_OIF") or -1)
        if dev is None or dev.startswith(self.prefixes):
            return None  # a workload route: the RouteManager's
        return NetRoute(dst, gateway=m.get("RTA_GATEWAY"), dev=dev, onlink=bool(m["flags"] & RTNH_F_ONLINK))

    # --- applying ---------------------------------------------------------------------------------------

    async def apply(self, plan: NetPlan) -> Keys:
        failed = Keys()
        for dst, route in plan.delete_routes.items():
            if not await self._do(f"delete route {dst}", self._del_route(route)):
                failed.routes.add(dst)
        for (dev, ip), mac in plan.delete_neighbours.items():
            if not await self._do(f"delete neighbour {ip} on {dev}", self._neigh("del", dev, ip, mac)):
                failed.neighbours.add((dev, ip))
        for (dev, mac), dst in plan.delete_fdb.items():
            if not await self._do(f"delete fdb {mac} on {dev}", self._fdb("del", dev, mac, dst)):
                failed.fdb.add((dev, mac))
        for name in plan.delete_devices:
            if not await self._do(f"delete device {name}", self._del_link(name)):
                failed.devices.add(name)
        for name, want in plan.create_devices.items():
            if name in failed.devices or not await self._do(f"create device {name}", self._create(want)):
                failed.devices.add(name)
        for name, (have, want) in plan.modify_devices.items():
            if not await self._do(f"change device {name}", self._modify(have, want)):
                failed.devices.add(name)
        for (dev, ip), mac in plan.add_neighbours.items():
            if not await self._do(f"neighbour {ip} on {dev}", self._neigh("replace", dev, ip, mac)):
                failed.neighbours.add((dev, ip))
        for (dev, mac), dst in plan.add_fdb.items():
            if not await self._do(f"fdb {mac} on {dev}", self._fdb("replace", dev, mac, dst)):
                failed.fdb.add((dev, mac))
        for dst, route in plan.add_routes.items():
            if not await self._do(f"route {dst}", self._add_route(route)):
                failed.routes.add(dst)
        return failed

    async def _do(self, what: str, request: Any) -> bool:
        try:
            await request
        except NetlinkError as e:
            if what.startswith("delete") and e.code in _GONE:
                return True  # already gone is what we wanted
            log.warning("%s in %s: %s", what, self.netns, e)
            return False
        except KeyError as e:  # an interface we need is missing (not read, not made)
            if what.startswith("delete"):
                return True  # what lived on it went with it
            log.warning("%s in %s: no interface %s", what, self.netns, e)
            return False
        return True

    async def _del_route(self, route: NetRoute) -> None:
        family = _family(route.dst)
        if route.type == "unicast":
            await self._sock().route("del", dst=route.dst, oif=self._index[route.dev or ""], family=family,
                                     table=RT_TABLE_MAIN, proto=RTPROT_CALICO)
        else:
            await self._sock().route("del", dst=route.dst, family=family, table=RT_TABLE_MAIN, proto=RTPROT_CALICO,
                                     type=route.type)

    async def _add_route(self, route: NetRoute) -> None:
        family = _family(route.dst)
        if route.type == "blackhole":
            await self._sock().route("replace", dst=route.dst, type="blackhole", family=family, table=RT_TABLE_MAIN,
                                     proto=RTPROT_CALICO)
            return
        await self._sock().route("replace", dst=route.dst, gateway=route.gateway, oif=self._index[route.dev or ""],
                                 flags=RTNH_F_ONLINK if route.onlink else 0, family=family, table=RT_TABLE_MAIN,
                                 proto=RTPROT_CALICO)

    async def _neigh(self, command: str, dev: str, ip: str, mac: str) -> None:
        await self._sock().neigh(command, dst=ip, lladdr=mac, ifindex=self._index[dev], family=_family(ip),
                                 state=NUD_PERMANENT)

    async def _fdb(self, command: str, dev: str, mac: str, dst: str) -> None:
        await self._sock().neigh(command, family=socket.AF_BRIDGE, ifindex=self._index[dev], lladdr=mac, dst=dst,
                                 state=NUD_PERMANENT, flags=NTF_SELF)

    async def _del_link(self, name: str) -> None:
        await self._sock().link("del", index=self._index[name])
        self._index.pop(name, None)

    async def _create(self, dev: Device) -> None:
        ipr = self._sock()
        if dev.kind == "vxlan":
            assert dev.local is not None and dev.parent is not None
            local = {"vxlan_local6" if ":" in dev.local else "vxlan_local": dev.local}
            await ipr.link("add", ifname=dev.name, kind="vxlan", vxlan_id=dev.vni, vxlan_port=dev.port,
                           vxlan_link=self._index[dev.parent], vxlan_learning=int(dev.learning), address=dev.mac,
                           mtu=dev.mtu, **local)
        else:
            try:
                await ipr.link("add", ifname=dev.name, kind="ipip")
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # tunl0 appears by itself where the ipip module is loaded
                    raise
        self._index[dev.name] = (await ipr.link_lookup(ifname=dev.name))[0]
        await self._modify(None, dev)

    async def _modify(self, have: Device | None, want: Device) -> None:
        ipr = self._sock()
        index = self._index[want.name]
        changes: dict[str, Any] = {}
        if have is None or have.mtu != want.mtu:
            changes["mtu"] = want.mtu
        if want.mac is not None and (have is None or have.mac != want.mac):
            changes["address"] = want.mac
        if changes:
            await ipr.link("set", index=index, **changes)
        held = have.addresses if have is not None else frozenset()
        for command, addrs, fine in (("del", held - want.addresses, _GONE), ("add", want.addresses - held,
                                                                             (errno.EEXIST,))):
            for addr in sorted(addrs):
                ip, _, plen = addr.partition("/")
                try:
                    await ipr.addr(command, index=index, address=ip, prefixlen=int(plen))
                except NetlinkError as e:
                    if e.code not in fine:  # already as wanted
                        raise
        if have is None or have.up != want.up:
            await ipr.link("set", index=index, state="up" if want.up else "down")


def _device(m: Any, name: str, up: bool, addresses: frozenset[str], names: dict[int, str]) -> Device:
    info = m.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info is not None else None
    mtu = m.get("IFLA_MTU") or 0
    if kind != "vxlan":
        # tunl0, or something else squatting on one of our names: an odd kind is re-created as ours.
        return Device(name, str(kind), mtu, addresses, up)
    data = info.get("IFLA_INFO_DATA")
    local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
    parent = names.get(data.get("IFLA_VXLAN_LINK") or -1)
    expected_family = 6 if name == VXLAN_DEVICE[6] else 4
    if local is not None and ipaddress.ip_address(local).version != expected_family:
        local = f"wrong-family:{local}"
    return Device(name, "vxlan", mtu, addresses, up, (m.get("IFLA_ADDRESS") or "").lower() or None,
                  data.get("IFLA_VXLAN_ID"), data.get("IFLA_VXLAN_PORT"), local, parent,
                  bool(data.get("IFLA_VXLAN_LEARNING")))

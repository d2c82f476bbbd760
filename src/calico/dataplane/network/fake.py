"""An in-memory kernel for Felix's network between hosts, with `kernel.NetlinkKernel`'s interface.

In: plans (`apply`), and tampering calls from tests (as another program would change the kernel: delete a
device, a route, a neighbour). Out: what it holds, `read()` in the real kernel's terms, and `requests`, the
number of netlink requests a real kernel would have received (one per object; a device creation counts its
settings too), so tests can check that the work follows the change.

It refuses what the kernel refuses, request by request (a plan is not atomic in the kernel either): an entry or
a route on a device that does not exist, a device of a kind listed in `unsupported_kinds` (this machine's
kernel has no `ipip`), and deleting a device that is not there is fine (already gone). Deleting a device takes
its neighbour and FDB entries and the routes through it along, as the kernel does. Pure.
"""

from __future__ import annotations

from dataclasses import replace

from calico.dataplane.network.diff import NetPlan
from calico.dataplane.network.model import Device, HostLink, Keys, NetRoute, NetworkView


class FakeNetlink:
    def __init__(self, links: tuple[HostLink, ...] = (), unsupported_kinds: frozenset[str] = frozenset()) -> None:
        self.links = links
        self.unsupported_kinds = unsupported_kinds
        self.held = NetworkView()
        self.requests = 0
        self.reads = 0
        self.opened = False

    # --- the kernel interface ----------------------------------------------------------------------------

    async def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.opened = False

    async def read(self) -> tuple[NetworkView, tuple[HostLink, ...]]:
        self.reads += 1
        h = self.held
        return NetworkView(dict(h.devices), dict(h.neighbours), dict(h.fdb), dict(h.routes)), self.links

    async def apply(self, plan: NetPlan) -> Keys:
        h = self.held
        failed = Keys()
        for dst in plan.delete_routes:
            self.requests += 1
            h.routes.pop(dst, None)
        for nk in plan.delete_neighbours:
            self.requests += 1
            h.neighbours.pop(nk, None)
        for fk in plan.delete_fdb:
            self.requests += 1
            h.fdb.pop(fk, None)
        for name in plan.delete_devices:
            self.requests += 1
            h.forget_device(name)
        for name, dev in plan.create_devices.items():
            self.requests += 2 + len(dev.addresses)  # add, set up, addresses
            orphan = dev.parent is not None and dev.parent not in {link.name for link in self.links}
            if dev.kind in self.unsupported_kinds or name in h.devices or orphan:
                failed.devices.add(name)
            else:
                h.devices[name] = dev
        for name, (_, want) in plan.modify_devices.items():
            self.requests += 1
            if name in h.devices:
                h.devices[name] = want
            else:
                failed.devices.add(name)
        for wanted, held, failures in ((plan.add_neighbours, h.neighbours, failed.neighbours),
                                       (plan.add_fdb, h.fdb, failed.fdb)):
            for key, value in wanted.items():
                self.requests += 1
                if key[0] in h.devices:  # an entry needs its device
                    held[key] = value
                else:
                    failures.add(key)
        for dst, route in plan.add_routes.items():
            self.requests += 1
            if route.dev is None or route.dev in h.devices or route.dev in {link.name for link in self.links}:
                h.routes[dst] = route
            else:
                failed.routes.add(dst)
        return failed

    # --- tampering, as another program would -------------------------------------------------------------

    def delete_device(self, name: str) -> None:
        self.held.forget_device(name)

    def delete_route(self, dst: str) -> None:
        del self.held.routes[dst]

    def add_route(self, route: NetRoute) -> None:
        self.held.routes[route.dst] = route

    def set_mtu(self, name: str, mtu: int) -> None:
        self.held.devices[name] = replace(self.held.devices[name], mtu=mtu)

    def add_device(self, dev: Device) -> None:
        self.held.devices[dev.name] = dev

"""Plan netlink changes for Felix's network between hosts: desired view vs what the kernel holds.

In: the desired `NetworkView` (`desired.DesiredNetwork`), the keys that changed (or a full pass), and the
planner's own record of the kernel (read back, then updated with every applied plan). Out: a `NetPlan`, the
ordered batch the kernel side runs (`kernel.NetlinkKernel`, `fake.FakeNetlink`), and, after `applied()`, the
new record of the kernel, with failures kept dirty for the next plan. Pure.

Order inside a plan: routes, neighbour and FDB entries that go; devices that go (or are re-created: VNI, port,
underlay address or interface changed, which a live VXLAN device cannot take); devices that come, then
changes made in place (MTU, MAC, addresses, up); then neighbour and FDB entries, then routes. A device that
goes takes every entry on it with it, so those are not deleted one by one, and a device that is (re)created
gets every entry it should carry, whatever was marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calico.dataplane.network.model import Device, FdbKey, Keys, NeighKey, NetRoute, NetworkView


@dataclass(slots=True)
class NetPlan:
    delete_routes: dict[str, NetRoute] = field(default_factory=dict)
    delete_neighbours: dict[NeighKey, str] = field(default_factory=dict)
    delete_fdb: dict[FdbKey, str] = field(default_factory=dict)
    delete_devices: list[str] = field(default_factory=list)  # re-created ones too
    create_devices: dict[str, Device] = field(default_factory=dict)
    modify_devices: dict[str, tuple[Device, Device]] = field(default_factory=dict)  # name -> (held, wanted)
    add_neighbours: dict[NeighKey, str] = field(default_factory=dict)
    add_fdb: dict[FdbKey, str] = field(default_factory=dict)
    add_routes: dict[str, NetRoute] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any((self.delete_routes, self.delete_neighbours, self.delete_fdb, self.delete_devices,
                    self.create_devices, self.modify_devices, self.add_neighbours, self.add_fdb, self.add_routes))

    def keys(self) -> Keys:
        """Every object this plan touches (a plan that could not run at all fails them all)."""
        return Keys(
            {*self.delete_devices, *self.create_devices, *self.modify_devices},
            {*self.delete_neighbours, *self.add_neighbours},
            {*self.delete_fdb, *self.add_fdb},
            {*self.delete_routes, *self.add_routes},
        )


class NetworkPlanner:
    """Remembers what the kernel holds and plans the next batch against the desired view."""

    def __init__(self) -> None:
        self.kernel = NetworkView()
        self._dirty = Keys()

    def mark(self, keys: Keys) -> None:
        self._dirty.update(keys)

    def set_kernel(self, view: NetworkView) -> None:
        """A fresh read-back replaces the record; what it holds is worth re-checking."""
        self.kernel = view
        self._dirty.update(Keys.of(view))

    def plan(self, desired: NetworkView, full: bool = False) -> NetPlan:
        # Take the marks now: changes arriving while the plan runs mark afresh (see RoutePlanner.plan).
        keys, self._dirty = self._dirty, Keys()
        if full:
            keys.update(Keys.of(desired))
            keys.update(Keys.of(self.kernel))
        plan = NetPlan()
        gone: set[str] = set()  # devices the plan deletes: the kernel drops what lives on them
        for name in sorted(keys.devices):
            want, have = desired.devices.get(name), self.kernel.devices.get(name)
            if have is not None and (want is None or want.identity() != have.identity()):
                plan.delete_devices.append(name)
                gone.add(name)
            if want is not None and (have is None or name in gone):
                plan.create_devices[name] = want
                keys.update(desired.on_device(name))  # a new device carries nothing yet
            elif want is not None and have is not None and want != have:
                plan.modify_devices[name] = (have, want)
        _entries(keys.neighbours, desired.neighbours, self.kernel.neighbours, gone, plan.delete_neighbours,
                 plan.add_neighbours)
        _entries(keys.fdb, desired.fdb, self.kernel.fdb, gone, plan.delete_fdb, plan.add_fdb)
        for dst in keys.routes:
            want_route, have_route = desired.routes.get(dst), self.kernel.routes.get(dst)
            if have_route is not None and have_route.dev in gone:
                have_route = None
            if have_route is not None and want_route is None:
                plan.delete_routes[dst] = have_route
            elif want_route is not None and want_route != have_route:
                plan.add_routes[dst] = want_route  # replace: also moves a route held another way
        return plan

    def applied(self, plan: NetPlan, failed: Keys | None = None) -> None:
        """Record what reached the kernel; what failed stays dirty for the next plan."""
        failed = failed or Keys()
        k = self.kernel
        for dst in plan.delete_routes:
            if dst not in failed.routes:
                k.routes.pop(dst, None)
        for nk in plan.delete_neighbours:
            if nk not in failed.neighbours:
                k.neighbours.pop(nk, None)
        for fk in plan.delete_fdb:
            if fk not in failed.fdb:
                k.fdb.pop(fk, None)
        for name in plan.delete_devices:
            if name not in failed.devices or name in plan.create_devices:
                k.forget_device(name)  # a failed re-create: the old one may be gone; the next plan sees
        for name, dev in plan.create_devices.items():
            if name not in failed.devices:
                k.devices[name] = dev
        for name, (_, want) in plan.modify_devices.items():
            if name not in failed.devices:
                k.devices[name] = want
        for nk, mac in plan.add_neighbours.items():
            if nk not in failed.neighbours:
                k.neighbours[nk] = mac
        for fk, dst in plan.add_fdb.items():
            if fk not in failed.fdb:
                k.fdb[fk] = dst
        for dst, route in plan.add_routes.items():
            if dst not in failed.routes:
                k.routes[dst] = route
        self._dirty.update(failed)


def _entries(keys: set[tuple[str, str]], want: dict[tuple[str, str], str], held: dict[tuple[str, str], str],
             gone: set[str], delete: dict[tuple[str, str], str], add: dict[tuple[str, str], str]) -> None:
    """Neighbour or FDB entries, keyed (device, ...): a changed value is deleted, then added anew. Entries on a
    device that goes are gone already."""
    for key in keys:
        want_value = want.get(key)
        have_value = None if key[0] in gone else held.get(key)
        if want_value == have_value:
            continue
        if have_value is not None:
            delete[key] = have_value
        if want_value is not None:
            add[key] = want_value

"""What the network between hosts is made of, as plain values: Felix's tunnel devices, their neighbour and FDB
entries, Felix's routes, and the host's own interfaces (read, never changed).

The desired side (`desired`) builds them from the dataplane's desired state, the kernel side (`kernel`, and
`fake` in memory) reads them back in the same terms, and the planner (`diff`) compares the two. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VXLAN_DEVICE = {4: "vxlan.calico", 6: "vxlan-v6.calico"}  # Calico's names
IPIP_DEVICE = "tunl0"  # the ipip module's fallback device, which Calico uses
FELIX_DEVICES = frozenset({*VXLAN_DEVICE.values(), IPIP_DEVICE})
VXLAN_OVERHEAD = {4: 50, 6: 70}  # outer IP + UDP + VXLAN + inner Ethernet headers
IPIP_OVERHEAD = 20


@dataclass(frozen=True, slots=True)
class HostLink:
    """One of the host's interfaces, as netlink reports it (Felix only reads these)."""

    name: str
    index: int
    mtu: int
    up: bool
    addresses: tuple[str, ...] = ()  # "198.19.1.1/24", "fd00:ff:1::1/64"


@dataclass(frozen=True, slots=True)
class Device:
    """A tunnel device Felix owns. `addresses` are host prefixes ("198.18.0.1/32", "fd00:1::1/128").
    VXLAN only: `mac`, `vni`, `port`, `local` (the underlay address) and `parent` (the interface holding it);
    these and `kind` cannot change on a live device (it is re-created), the rest is set in place."""

    name: str
    kind: str  # "vxlan" | "ipip" (read back: whatever kind squats on the name)
    mtu: int
    addresses: frozenset[str] = frozenset()
    up: bool = True
    mac: str | None = None
    vni: int | None = None
    port: int | None = None
    local: str | None = None
    parent: str | None = None
    learning: bool = False

    def identity(self) -> tuple[object, ...]:
        """What only re-creating the device can change."""
        return self.kind, self.vni, self.port, self.local, self.parent, self.learning


@dataclass(frozen=True, slots=True)
class NetRoute:
    """One of Felix's routes between hosts (protocol 80, main table). `dev` None: a blackhole."""

    dst: str  # canonical CIDR
    type: str = "unicast"  # "unicast" | "blackhole" (read back: any route type's name)
    gateway: str | None = None
    dev: str | None = None
    onlink: bool = False


NeighKey = tuple[str, str]  # (device, tunnel address) -> MAC
FdbKey = tuple[str, str]  # (device, MAC) -> underlay address


@dataclass(slots=True)
class NetworkView:
    """Felix's network objects, desired or as the kernel holds them."""

    devices: dict[str, Device] = field(default_factory=dict)
    neighbours: dict[NeighKey, str] = field(default_factory=dict)
    fdb: dict[FdbKey, str] = field(default_factory=dict)
    routes: dict[str, NetRoute] = field(default_factory=dict)

    def on_device(self, dev: str) -> Keys:
        """The keys of every entry that lives on `dev` (they go with it when it is deleted)."""
        return Keys(
            neighbours={k for k in self.neighbours if k[0] == dev},
            fdb={k for k in self.fdb if k[0] == dev},
            routes={d for d, r in self.routes.items() if r.dev == dev},
        )

    def forget_device(self, dev: str) -> None:
        """The kernel removed `dev`, and with it every entry on it."""
        self.devices.pop(dev, None)
        gone = self.on_device(dev)
        for nk in gone.neighbours:
            del self.neighbours[nk]
        for fk in gone.fdb:
            del self.fdb[fk]
        for dst in gone.routes:
            del self.routes[dst]


@dataclass(slots=True)
class Keys:
    """Which objects to look at (changed since the last plan, or failed and to retry)."""

    devices: set[str] = field(default_factory=set)
    neighbours: set[NeighKey] = field(default_factory=set)
    fdb: set[FdbKey] = field(default_factory=set)
    routes: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.devices or self.neighbours or self.fdb or self.routes)

    def update(self, other: Keys) -> None:
        self.devices |= other.devices
        self.neighbours |= other.neighbours
        self.fdb |= other.fdb
        self.routes |= other.routes

    @staticmethod
    def of(view: NetworkView) -> Keys:
        return Keys(set(view.devices), set(view.neighbours), set(view.fdb), set(view.routes))

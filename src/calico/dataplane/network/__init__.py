"""The network between hosts: Felix's VXLAN and IP-in-IP devices, their FDB and neighbour entries, its routes to
other hosts' blocks and the blackholes of its own, and the workload MTU.

In: the `DataplaneConfig` (VXLANEnabled, VXLANVNI, VXLANPort, VXLANMTU(V6), IpInIpEnabled, IpInIpMtu,
MTUIfacePattern, the MTU file, this host's name) and, from the driver, the `DesiredState`'s `pools`, `vteps` and
`routes` (the calculation graph's `IPPoolUpdate`, `VTEPUpdate`, `RouteUpdate`) with what changed in them.
Out: kernel objects in one network namespace, and the MTU file.

    model (values)   Device, NetRoute, HostLink, NetworkView (desired or held), Keys (what to look at)
    mtu (pure)       host MTU (MTUIfacePattern, else the underlay interface), tunnel and workload MTUs
    desired (pure)   DesiredNetwork: state -> devices, neighbours, FDB entries, routes (by what changed)
    diff (pure)      NetworkPlanner: desired vs held -> NetPlan, in kernel order; failures stay marked
    kernel (I/O)     NetlinkKernel: pyroute2 in the namespace, the only netlink of this package
    fake             FakeNetlink: the same interface in memory (and this kernel's missing ipip)
    mtufile (I/O)    the workload MTU for the CNI plugin
    manager          NetworkManager: start (read back), update (per batch), refresh (repair), stop

Ownership of protocol-80 routes is by device: the `netlink.RouteManager` keeps the routes on workload
interfaces, this package every other protocol-80 route of the main table (see `kernel`).
"""

from calico.dataplane.network.fake import FakeNetlink
from calico.dataplane.network.manager import NetworkKernel, NetworkManager
from calico.dataplane.network.model import IPIP_DEVICE, VXLAN_DEVICE, Device, HostLink, NetRoute, NetworkView

__all__ = [
    "IPIP_DEVICE",
    "VXLAN_DEVICE",
    "Device",
    "FakeNetlink",
    "HostLink",
    "NetRoute",
    "NetworkKernel",
    "NetworkManager",
    "NetworkView",
]

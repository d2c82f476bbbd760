"""Workload routes, interface monitoring, per-interface sysctls and conntrack clean-up, over netlink.

In: desired workload endpoints (`calico.calculation.events.WorkloadEndpointUpdate`). Out: kernel routes,
sysctls and conntrack state of one network namespace. `plan` is the pure diff (routes wanted vs routes held),
`commands` the batched sysctl / conntrack processes, `routes.RouteManager` the netlink I/O and link monitor.
"""

from calico.dataplane.netlink.plan import Link, RoutePlan, RoutePlanner
from calico.dataplane.netlink.routes import RTPROT_CALICO, RouteManager

__all__ = ["RTPROT_CALICO", "Link", "RouteManager", "RoutePlan", "RoutePlanner"]

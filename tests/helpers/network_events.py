"""Builders for the network-of-hosts events the dataplane programs (pools, VTEPs, routes), shared by the unit
tests over fakes and the real-kernel tests."""

from __future__ import annotations

from calico.calculation import events as ev
from calico.calculation.nodes import vtep_mac
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.state import DesiredState


def config(**kw: object) -> DataplaneConfig:
    """This host is "h1"."""
    return DataplaneConfig(hostname="h1", **kw)  # type: ignore[arg-type]


def state(*events: ev.DataplaneEvent, **cfg: object) -> DesiredState:
    """A desired state of host h1 holding `events`, in sync."""
    s = DesiredState(config(**cfg))
    s.apply_all([*events, ev.InSync()])
    return s


def pool(cidr: str, vxlan: str = "Never", nat: bool = False, ipip: str = "Never") -> ev.IPPoolUpdate:
    return ev.IPPoolUpdate(cidr, nat, vxlan, ipip, False, 26 if ":" not in cidr else 122)


def vtep(node: str, underlay: str | None, tunnel: str | None, underlay6: str | None = None,
         tunnel6: str | None = None, ipip: str | None = None) -> ev.VTEPUpdate:
    return ev.VTEPUpdate(
        node, underlay if tunnel else None, tunnel, vtep_mac(node, 4) if tunnel else None,
        underlay6 if tunnel6 else None, tunnel6, vtep_mac(node, 6) if tunnel6 else None, ipip,
    )


def vxlan_route(dst: str, node: str, tunnel: str) -> ev.RouteUpdate:
    return ev.RouteUpdate(dst, node, tunnel, ev.RouteKind.VXLAN)


def direct_route(dst: str, node: str, underlay: str) -> ev.RouteUpdate:
    return ev.RouteUpdate(dst, node, underlay, ev.RouteKind.DIRECT)


def ipip_route(dst: str, node: str, underlay: str) -> ev.RouteUpdate:
    return ev.RouteUpdate(dst, node, underlay, ev.RouteKind.IPIP)


def local_block(dst: str, node: str) -> ev.RouteUpdate:
    return ev.RouteUpdate(dst, node, None, ev.RouteKind.LOCAL_BLOCK)


ALLOW = ev.RenderedRule("Allow", rule_id="allow")
ALLOW_PROFILE = ev.ProfileUpdate("allow", (ALLOW,), (ALLOW,))


def workload(name: str, iface: str, ipv4: str, ipv6: str | None = None) -> ev.WorkloadEndpointUpdate:
    """A local workload whose profile ("allow", `ALLOW_PROFILE`) lets everything in and out."""
    return ev.WorkloadEndpointUpdate(
        ev.WorkloadEndpointID("default", name), iface, None, (f"{ipv4}/32",), (f"{ipv6}/128",) if ipv6 else (), (),
        ("allow",))

"""DesiredState folds the network events (pools, VTEPs, routes) into plain dicts with dirty keys."""

from __future__ import annotations

from calico.calculation import events as ev
from calico.dataplane.state import DesiredState

POOL = ev.IPPoolUpdate(
    "198.18.0.0/16", nat_outgoing=True, vxlan_mode="Always", ipip_mode="Never", disabled=False, block_size=26
)
VTEP = ev.VTEPUpdate("n2", "198.19.1.2", "198.18.1.1", "66:00:00:00:00:02")
ROUTE = ev.RouteUpdate("198.18.1.0/26", "n2", "198.18.1.1", ev.RouteKind.VXLAN)


def test_network_events_fold_into_dicts_and_mark_dirty() -> None:
    s = DesiredState()
    s.apply_all([POOL, VTEP, ROUTE])
    assert s.pools == {POOL.cidr: POOL} and s.vteps == {"n2": VTEP} and s.routes == {ROUTE.dst: ROUTE}
    dirty = s.take_dirty()
    assert dirty and dirty.pools == {POOL.cidr} and dirty.vteps == {"n2"} and dirty.routes == {ROUTE.dst}
    assert not s.take_dirty()

    moved = ev.RouteUpdate(ROUTE.dst, "n3", "198.18.2.1", ev.RouteKind.VXLAN)
    s.apply(moved)
    assert s.routes[ROUTE.dst] == moved and s.take_dirty().routes == {ROUTE.dst}

    s.apply_all([ev.RouteRemove(ROUTE.dst), ev.VTEPRemove("n2"), ev.IPPoolRemove(POOL.cidr)])
    assert s.pools == {} and s.vteps == {} and s.routes == {}
    dirty = s.take_dirty()
    assert dirty.pools == {POOL.cidr} and dirty.vteps == {"n2"} and dirty.routes == {ROUTE.dst}


def test_removing_what_is_not_there_is_not_a_change() -> None:
    s = DesiredState()
    s.apply_all([ev.RouteRemove("198.18.9.0/26"), ev.VTEPRemove("n9"), ev.IPPoolRemove("198.20.0.0/16")])
    assert not s.take_dirty()

"""The network between hosts, pure parts: desired devices, entries and routes from the desired state (VXLAN,
CrossSubnet, IP-in-IP, blackholes, MTUs), what a change recomputes, and the planner's batches against a
recorded kernel (order, re-creation, failures kept)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calculation import events as ev
from calico.calculation.nodes import vtep_mac
from calico.dataplane.network.desired import DesiredNetwork, desired_devices
from calico.dataplane.network.diff import NetworkPlanner
from calico.dataplane.network.model import Device, HostLink, Keys, NetRoute, NetworkView
from calico.dataplane.network.mtu import host_mtu, workload_mtu
from calico.dataplane.state import DesiredState
from tests.helpers.network_events import direct_route, ipip_route, local_block, pool, state, vtep, vxlan_route

ETH0 = HostLink("eth0", 2, 1500, True, ("198.19.1.1/24", "fd00:ff:1::1/64"))
ETH1 = HostLink("eth1", 3, 9000, True, ("198.19.7.1/24",))
LINKS = (ETH0,)
POOL4, POOL6 = "198.18.0.0/16", "fd00:1::/48"
ME = vtep("h1", "198.19.1.1", "198.18.0.1", "fd00:ff:1::1", "fd00:1::1")
H2 = vtep("h2", "198.19.1.2", "198.18.1.1", "fd00:ff:1::2", "fd00:1:0:1::1")
H3 = vtep("h3", "198.19.2.3", "198.18.2.1")


def devices_of(s: DesiredState, links: tuple[HostLink, ...]) -> dict[str, Device]:
    return desired_devices(s.config, s, links)


def desired(s: DesiredState, links: tuple[HostLink, ...] = LINKS) -> DesiredNetwork:
    d = DesiredNetwork(s.config)
    d.update(s, links)
    return d


# --- devices and MTUs --------------------------------------------------------------------------------------


def test_vxlan_devices_follow_the_pools_and_this_hosts_vtep() -> None:
    s = state(pool(POOL4, "Always"), pool(POOL6, "CrossSubnet"), ME, H2)
    devices = devices_of(s, LINKS)
    assert devices["vxlan.calico"] == Device(
        "vxlan.calico", "vxlan", 1450, frozenset({"198.18.0.1/32"}), mac=vtep_mac("h1", 4), vni=4096, port=4789,
        local="198.19.1.1", parent="eth0")
    assert devices["vxlan-v6.calico"] == Device(
        "vxlan-v6.calico", "vxlan", 1430, frozenset({"fd00:1::1/128"}), mac=vtep_mac("h1", 6), vni=4096, port=4789,
        local="fd00:ff:1::1", parent="eth0")
    # No VXLAN pool: no device, whatever the VTEP says; VXLANEnabled forces either way.
    assert devices_of(state(pool(POOL4), ME), LINKS) == {}
    assert set(devices_of(state(pool(POOL4), ME, vxlan_enabled=True), LINKS)) == {"vxlan.calico", "vxlan-v6.calico"}
    assert devices_of(state(pool(POOL4, "Always"), ME, vxlan_enabled=False), LINKS) == {}
    # A v4-only VXLAN pool: only the v4 device. No own VTEP, or its address on no interface: none.
    assert set(devices_of(state(pool(POOL4, "Always"), ME), LINKS)) == {"vxlan.calico"}
    assert devices_of(state(pool(POOL4, "Always"), H2), LINKS) == {}
    assert devices_of(state(pool(POOL4, "Always"), ME), (ETH1,)) == {}


def test_configured_vni_port_and_mtus() -> None:
    s = state(pool(POOL4, "Always"), pool(POOL6, "Always"), ME, vxlan_vni=77, vxlan_port=8472, vxlan_mtu=1400,
              vxlan_mtu_v6=1300)
    devices = devices_of(s, LINKS)
    assert (devices["vxlan.calico"].vni, devices["vxlan.calico"].port) == (77, 8472)
    assert (devices["vxlan.calico"].mtu, devices["vxlan-v6.calico"].mtu) == (1400, 1300)


def test_host_mtu_from_the_pattern_else_the_underlay_interface() -> None:
    small = HostLink("ens3", 4, 1400, True)
    down = HostLink("eth9", 5, 1000, False)
    assert host_mtu((ETH0, small, down), r"^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)", None) == 1400
    assert host_mtu((ETH0, ETH1), "^eth1$", ETH0) == 9000
    assert host_mtu((ETH0,), "^nomatch$", ETH0) == 1500
    assert host_mtu((HostLink("fabric", 2, 1450, True),), "^eth", HostLink("fabric", 2, 1450, True)) == 1450
    assert host_mtu((), "^eth", None) == 1500
    tunnel = HostLink("vxlan.calico", 9, 100, True)  # our own device never decides the host MTU
    assert host_mtu((ETH0, tunnel), "^(eth|vxlan)", None) == 1500
    s = state(pool(POOL4, "Always"), ME, mtu_iface_pattern="^eth1$")
    assert devices_of(s, (ETH0, ETH1))["vxlan.calico"].mtu == 8950
    d = desired(state(pool(POOL4, "Always"), pool(POOL6, "Always"), ME))
    assert d.workload_mtu == 1430  # the smallest tunnel's
    assert desired(state(pool(POOL4), ME)).workload_mtu == 1500
    assert workload_mtu(1500, []) == 1500


def test_ipip_device_rendered_from_ipip_pools() -> None:
    me = dataclasses.replace(vtep("h1", "198.19.1.1", None), parent_ip="198.19.1.1", ipip_addr="198.18.0.1")
    s = state(pool(POOL4, ipip="Always"), me)
    assert devices_of(s, LINKS) == {
        "tunl0": Device("tunl0", "ipip", 1480, frozenset({"198.18.0.1/32"}))}
    assert devices_of(state(pool(POOL4, ipip="CrossSubnet"), ipip_mtu=1400), LINKS)["tunl0"] == \
        Device("tunl0", "ipip", 1400, frozenset())
    assert devices_of(state(pool(POOL4), me), LINKS) == {}
    assert devices_of(state(pool(POOL4, ipip="Always"), me, ipip_enabled=False), LINKS) == {}


# --- entries and routes -----------------------------------------------------------------------------------


def test_other_nodes_become_fdb_and_neighbour_entries_on_each_family() -> None:
    d = desired(state(pool(POOL4, "Always"), pool(POOL6, "Always"), ME, H2, H3))
    assert d.view.neighbours == {
        ("vxlan.calico", "198.18.1.1"): vtep_mac("h2", 4), ("vxlan.calico", "198.18.2.1"): vtep_mac("h3", 4),
        ("vxlan-v6.calico", "fd00:1:0:1::1"): vtep_mac("h2", 6),
    }
    assert d.view.fdb == {
        ("vxlan.calico", vtep_mac("h2", 4)): "198.19.1.2", ("vxlan.calico", vtep_mac("h3", 4)): "198.19.2.3",
        ("vxlan-v6.calico", vtep_mac("h2", 6)): "fd00:ff:1::2",
    }


def test_routes_by_kind() -> None:
    s = state(pool(POOL4, "CrossSubnet"), pool("198.20.0.0/16"), pool(POOL6, "Always"), ME, H2, H3,
              vxlan_route("198.18.2.0/26", "h3", "198.18.2.1"), direct_route("198.18.1.0/26", "h2", "198.19.1.2"),
              local_block("198.18.0.0/26", "h1"), local_block("198.20.0.0/26", "h1"),
              vxlan_route("fd00:1:0:1::/122", "h2", "fd00:1:0:1::1"), local_block("fd00:1::/122", "h1"))
    assert desired(s).view.routes == {
        "198.18.2.0/26": NetRoute("198.18.2.0/26", gateway="198.18.2.1", dev="vxlan.calico", onlink=True),
        "198.18.1.0/26": NetRoute("198.18.1.0/26", gateway="198.19.1.2", dev="eth0"),
        "198.18.0.0/26": NetRoute("198.18.0.0/26", type="blackhole"),  # Felix's: BIRD leaves VXLAN pools alone
        "fd00:1:0:1::/122": NetRoute("fd00:1:0:1::/122", gateway="fd00:1:0:1::1", dev="vxlan-v6.calico",
                                     onlink=True),
        "fd00:1::/122": NetRoute("fd00:1::/122", type="blackhole"),
    }  # 198.20.0.0/26 is in a pool without encapsulation: BIRD blackholes it, not Felix
    # A direct route whose gateway no interface reaches is left out (until one does).
    assert "198.18.1.0/26" not in desired(s, (HostLink("eth0", 2, 1500, True, ("198.19.1.1/32",)),)).view.routes


def test_ipip_routes_through_tunl0() -> None:
    me = dataclasses.replace(vtep("h1", "198.19.1.1", None), parent_ip="198.19.1.1", ipip_addr="198.18.0.1")
    s = state(pool(POOL4, ipip="Always"), me, ipip_route("198.18.2.0/26", "h3", "198.19.2.3"),
              local_block("198.18.0.0/26", "h1"))
    assert desired(s).view.routes == {
        "198.18.2.0/26": NetRoute("198.18.2.0/26", gateway="198.19.2.3", dev="tunl0", onlink=True),
        "198.18.0.0/26": NetRoute("198.18.0.0/26", type="blackhole"),
    }


def test_work_follows_the_change() -> None:
    s = state(pool(POOL4, "Always"), ME, H2, H3, vxlan_route("198.18.2.0/26", "h3", "198.18.2.1"),
              local_block("198.18.0.0/26", "h1"))
    d = desired(s)
    s.take_dirty()
    h3 = vtep("h3", "198.19.2.33", "198.18.2.1")
    s.apply(h3)
    changed = d.update(s, LINKS, vteps=s.take_dirty().vteps)
    assert changed == Keys(fdb={("vxlan.calico", vtep_mac("h3", 4))})
    assert d.view.fdb[("vxlan.calico", vtep_mac("h3", 4))] == "198.19.2.33"
    s.apply(ev.RouteRemove("198.18.2.0/26"))
    assert d.update(s, LINKS, routes=s.take_dirty().routes) == Keys(routes={"198.18.2.0/26"})
    # A pool turned to no encapsulation: VXLAN goes as a whole (device, entries, blackholes).
    s.apply(pool(POOL4))
    changed = d.update(s, LINKS, pools=bool(s.take_dirty().pools))
    assert changed.devices == {"vxlan.calico"} and changed.routes == {"198.18.0.0/26"}
    assert d.view == NetworkView()
    assert d.update(s, LINKS) == Keys()  # nothing changed: nothing to look at


def test_two_nodes_claiming_one_mac_the_smaller_name_wins() -> None:
    clone = dataclasses.replace(H3, mac=H2.mac)
    s = state(pool(POOL4, "Always"), ME, H2, clone)
    d = desired(s)
    assert d.view.fdb[("vxlan.calico", H2.mac)] == "198.19.1.2"  # type: ignore[index]
    s.apply(ev.VTEPRemove("h2"))
    d.update(s, LINKS, vteps={"h2"})
    assert d.view.fdb[("vxlan.calico", H2.mac)] == "198.19.2.3"  # type: ignore[index]


# --- the planner ---------------------------------------------------------------------------------------------


def full_view() -> NetworkView:
    return desired(state(pool(POOL4, "Always"), ME, H2, vxlan_route("198.18.1.0/26", "h2", "198.18.1.1"),
                         local_block("198.18.0.0/26", "h1"))).view


def test_first_plan_creates_everything_in_kernel_order() -> None:
    want = full_view()
    plan = NetworkPlanner().plan(want, full=True)
    assert list(plan.create_devices) == ["vxlan.calico"] and not plan.delete_devices
    assert plan.add_neighbours == want.neighbours and plan.add_fdb == want.fdb and plan.add_routes == want.routes
    assert not (plan.delete_routes or plan.delete_neighbours or plan.delete_fdb or plan.modify_devices)


def test_mtu_change_is_made_in_place_and_vni_change_recreates_with_every_entry() -> None:
    want = full_view()
    planner = NetworkPlanner()
    planner.set_kernel(dataclasses.replace(want, devices=dict(want.devices)))
    assert not planner.plan(want)  # the kernel holds it all
    dev = want.devices["vxlan.calico"]
    changed = NetworkView({"vxlan.calico": dataclasses.replace(dev, mtu=1400)}, want.neighbours, want.fdb, want.routes)
    plan = planner.plan(changed, full=True)
    assert plan.modify_devices == {"vxlan.calico": (dev, changed.devices["vxlan.calico"])}
    assert not (plan.create_devices or plan.add_routes)
    planner.applied(plan)
    recreated = NetworkView({"vxlan.calico": dataclasses.replace(dev, mtu=1400, vni=5)}, want.neighbours, want.fdb,
                            want.routes)
    planner.mark(Keys(devices={"vxlan.calico"}))
    plan = planner.plan(recreated)
    assert plan.delete_devices == ["vxlan.calico"] and list(plan.create_devices) == ["vxlan.calico"]
    # Everything on the device comes back (the kernel drops it with the old one); the blackhole is not on it.
    assert plan.add_neighbours == want.neighbours and plan.add_fdb == want.fdb
    assert set(plan.add_routes) == {"198.18.1.0/26"} and not plan.delete_routes


def test_leftovers_are_deleted_and_failures_retried() -> None:
    want = full_view()
    planner = NetworkPlanner()
    stray = NetRoute("198.18.9.0/26", gateway="198.18.9.1", dev="vxlan.calico", onlink=True)
    held = NetworkView(dict(want.devices), {("vxlan.calico", "198.18.9.1"): "66:00:00:00:00:09"}, {},
                       {stray.dst: stray})
    planner.set_kernel(held)
    plan = planner.plan(want, full=True)
    assert plan.delete_routes == {stray.dst: stray}
    assert plan.delete_neighbours == {("vxlan.calico", "198.18.9.1"): "66:00:00:00:00:09"}
    assert plan.add_routes == want.routes and plan.add_fdb == want.fdb
    planner.applied(plan, Keys(routes={"198.18.1.0/26"}))
    retry = planner.plan(want)
    assert set(retry.add_routes) == {"198.18.1.0/26"} and not retry.delete_routes and not retry.add_fdb
    planner.applied(retry)
    assert planner.kernel == want and not planner.plan(want)


def test_device_removed_takes_its_entries_without_deleting_them_one_by_one() -> None:
    want = full_view()
    planner = NetworkPlanner()
    planner.set_kernel(NetworkView(dict(want.devices), dict(want.neighbours), dict(want.fdb), dict(want.routes)))
    plan = planner.plan(NetworkView(), full=True)
    assert plan.delete_devices == ["vxlan.calico"]
    assert not plan.delete_neighbours and not plan.delete_fdb
    assert set(plan.delete_routes) == {"198.18.0.0/26"}  # the blackhole is on no device
    planner.applied(plan)
    assert planner.kernel == NetworkView()


def test_no_ipv6_vxlan_without_ipv6_support() -> None:
    s = state(pool(POOL4, "Always"), pool(POOL6, "Always"), ME, ipv6_support=False)
    assert set(devices_of(s, LINKS)) == {"vxlan.calico"}


# --- incremental == from scratch, for any sequence of changes -----------------------------------------------

_NODES = ["h1", "h2", "h3"]
_DSTS = ["198.18.1.0/26", "198.18.2.0/26", "198.18.0.0/26", "fd00:1:0:1::/122", "198.20.0.0/26"]
_net_event = st.one_of(
    st.builds(lambda n, sub, t6, ipip: vtep(n, f"198.19.{sub}.{n[1:]}", f"198.18.{n[1:]}.1",
                                            f"fd00:ff:{sub}::{n[1:]}", f"fd00:1:0:{n[1:]}::1" if t6 else None,
                                            f"198.18.{n[1:]}.3" if ipip else None),
              st.sampled_from(_NODES), st.sampled_from([1, 2]), st.booleans(), st.booleans()),
    st.builds(ev.VTEPRemove, st.sampled_from(_NODES)),
    st.builds(lambda cidr, vx, ipip: pool(cidr, vx, ipip="Never" if ":" in cidr or vx != "Never" else ipip),
              st.sampled_from([POOL4, POOL6, "198.20.0.0/16"]), st.sampled_from(["Never", "Always", "CrossSubnet"]),
              st.sampled_from(["Never", "Always"])),
    st.builds(ev.IPPoolRemove, st.sampled_from([POOL4, POOL6, "198.20.0.0/16"])),
    st.builds(lambda dst, node, kind: ev.RouteUpdate(
        dst, node, None if kind is ev.RouteKind.LOCAL_BLOCK else ("198.19.1.2" if ":" not in dst else "fd00:ff:1::2"),
        kind), st.sampled_from(_DSTS), st.sampled_from(_NODES), st.sampled_from(list(ev.RouteKind))),
    st.builds(ev.RouteRemove, st.sampled_from(_DSTS)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_net_event, min_size=1, max_size=5), min_size=1, max_size=8),
       st.sampled_from([(ETH0,), (ETH0, ETH1), ()]))
def test_incremental_desired_network_equals_a_fresh_one(batches: list[list[ev.DataplaneEvent]],
                                                        links: tuple[HostLink, ...]) -> None:
    s = state()
    d = DesiredNetwork(s.config)
    d.update(s, LINKS)
    planner = NetworkPlanner()
    for batch in batches:
        s.apply_all(batch)
        dirty = s.take_dirty()
        planner.mark(d.update(s, LINKS, dirty.vteps, dirty.routes, bool(dirty.pools)))
        planner.applied(planner.plan(d.view))  # a kernel that takes everything
        assert d.view == desired(s).view
        assert planner.kernel == d.view  # the marked keys were enough to get there
    d.update(s, links)  # the host's interfaces change: a full recomputation
    assert d.view == desired(s, links).view

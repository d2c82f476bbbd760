"""The pure route planner: endpoints + links + our kernel routes in, a RoutePlan out. No kernel needed."""

from __future__ import annotations

from calico.calculation import events as ev
from calico.dataplane.netlink.commands import interface_sysctls
from calico.dataplane.netlink.plan import Link, RoutePlanner, host_address, normalise


def ep(name: str, iface: str, v4: tuple[str, ...] = (), v6: tuple[str, ...] = ()) -> ev.WorkloadEndpointUpdate:
    return ev.WorkloadEndpointUpdate(
        endpoint_id=ev.WorkloadEndpointID("ns", name), iface=iface, mac=None, ipv4_nets=v4, ipv6_nets=v6,
        tiers=(), profile_ids=(),
    )


A = ep("a", "cali1", ("198.18.1.2/32",), ("fd00::2/128",))
B = ep("b", "cali2", ("198.18.1.3/32",))


def applied(p: RoutePlanner, full: bool = False):
    plan = p.plan(full=full)
    p.applied(plan)
    return plan


def test_normalise_and_host_address() -> None:
    assert normalise("fd00:0::2/128") == "fd00::2/128"
    assert normalise("198.18.1.2") == "198.18.1.2/32"
    assert host_address("198.18.1.2/32") == "198.18.1.2"
    assert host_address("198.18.1.0/26") is None


def test_route_only_while_link_up() -> None:
    p = RoutePlanner()
    p.set_endpoint(A)
    plan = applied(p)
    assert not plan.add  # no interface yet
    p.set_link(Link("cali1", 7, oper_up=False))
    plan = applied(p)
    assert not plan.add and plan.configure == {"cali1": 7}  # sysctls as soon as it exists
    p.set_link(Link("cali1", 7, oper_up=True))
    plan = applied(p)
    assert plan.add == {"198.18.1.2/32": 7, "fd00::2/128": 7} and not plan.configure
    p.set_link(Link("cali1", 7, oper_up=False))
    plan = applied(p)
    assert plan.delete == {"198.18.1.2/32": 7, "fd00::2/128": 7}
    assert not plan.flush_conntrack  # link down is not the address going away
    assert p.kernel == {}


def test_endpoint_removed_deletes_and_flushes() -> None:
    p = RoutePlanner()
    p.set_links([Link("cali1", 7, True), Link("cali2", 8, True)])
    p.set_endpoints([A, B])
    applied(p)
    p.set_endpoints([B])
    plan = applied(p)
    assert plan.delete == {"198.18.1.2/32": 7, "fd00::2/128": 7}
    assert plan.flush_conntrack == {"198.18.1.2", "fd00::2"}
    assert not applied(p)  # nothing left to do


def test_readded_before_flush_keeps_flows() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_endpoint(A)
    applied(p)
    p.remove_endpoint(A.endpoint_id)
    p.set_endpoint(A)
    plan = p.plan()
    assert not plan.flush_conntrack and not plan.delete


def test_link_vanishes_and_comes_back_with_new_index() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_endpoint(A)
    applied(p)
    p.remove_link("cali1", 7)
    plan = applied(p)
    assert not plan.delete  # the kernel removed them with the device
    assert p.kernel == {}
    p.set_link(Link("cali1", 9, True))
    plan = applied(p)
    assert plan.add == {"198.18.1.2/32": 9, "fd00::2/128": 9} and plan.configure == {"cali1": 9}


def test_leftovers_wait_for_in_sync() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_kernel_routes({"198.18.9.9/32": 7, "198.18.1.2/32": 7})
    p.set_endpoint(A)
    plan = applied(p, full=True)
    assert plan.add == {"fd00::2/128": 7} and not plan.delete  # 198.18.1.2 already right; 9.9 unknown: kept
    p.in_sync = True
    plan = applied(p, full=True)
    assert plan.delete == {"198.18.9.9/32": 7} and plan.flush_conntrack == {"198.18.9.9"}


def test_drift_repaired_by_full_plan() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_endpoint(A)
    applied(p)
    p.set_kernel_routes({"fd00::2/128": 7})  # someone deleted the v4 route
    assert applied(p, full=True).add == {"198.18.1.2/32": 7}


def test_wrong_interface_replaced_and_prefix_respected() -> None:
    p = RoutePlanner(("cali",))
    p.set_links([Link("cali1", 7, True), Link("eth0", 2, True)])
    p.set_kernel_routes({"198.18.1.2/32": 2})
    p.set_endpoint(A)
    assert applied(p).add == {"198.18.1.2/32": 7, "fd00::2/128": 7}
    p.set_endpoint(ep("x", "eth0", ("198.18.1.50/32",)))  # not a workload interface: never routed or configured
    plan = applied(p)
    assert not plan.add and not plan.configure


def test_conflicting_claims_smallest_id_wins() -> None:
    p = RoutePlanner()
    p.set_links([Link("cali1", 7, True), Link("cali2", 8, True)])
    p.set_endpoint(ep("z", "cali2", ("198.18.1.2/32",)))
    p.set_endpoint(ep("a", "cali1", ("198.18.1.2/32",)))
    assert applied(p).add == {"198.18.1.2/32": 7}
    p.remove_endpoint(ev.WorkloadEndpointID("ns", "a"))
    plan = applied(p)
    assert plan.add == {"198.18.1.2/32": 8} and not plan.flush_conntrack


def test_failures_stay_dirty() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_endpoint(A)
    plan = p.plan()
    p.applied(plan, failed_routes={"fd00::2/128"}, failed_ifaces={"cali1"}, conntrack_done=True)
    again = p.plan()
    assert again.add == {"fd00::2/128": 7} and again.configure == {"cali1": 7}


def test_work_proportional_to_change() -> None:
    p = RoutePlanner()
    p.set_links([Link(f"cali{i}", i + 10, True) for i in range(200)])
    p.set_endpoints([ep(f"e{i}", f"cali{i}", (f"198.18.{i // 250}.{i % 250 + 1}/32",)) for i in range(200)])
    applied(p)
    p.set_link(Link("cali5", 15, False))
    assert p._dirty == {"198.18.0.6/32"}  # only the one endpoint behind the changed link


def test_interface_sysctls() -> None:
    s = interface_sysctls("cali1")
    for want in ("net.ipv4.conf.cali1.proxy_arp=1", "net.ipv4.neigh.cali1.proxy_delay=0",
                 "net.ipv4.conf.cali1.forwarding=1", "net.ipv6.conf.cali1.forwarding=1",
                 "net.ipv4.conf.cali1.rp_filter=1", "net.ipv6.conf.cali1.accept_ra=0",
                 "net.ipv6.conf.cali1.disable_ipv6=0"):
        assert want in s


def test_changes_while_applying_are_kept() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_endpoint(A)
    plan = p.plan()
    p.set_link(Link("cali2", 8, True))  # arrives while the plan is in flight
    p.set_endpoint(B)
    p.applied(plan)
    assert p.plan().add == {"198.18.1.3/32": 8}


def test_unapplied_plan_put_back() -> None:
    p = RoutePlanner()
    p.set_link(Link("cali1", 7, True))
    p.set_endpoint(A)
    plan = p.plan()
    p.applied(plan, {*plan.add, *plan.delete}, set(plan.configure), conntrack_done=False)
    again = p.plan()
    assert again.add == plan.add and again.configure == plan.configure


def test_proc_path_keeps_dotted_interface_names() -> None:
    from pathlib import Path

    from calico.dataplane.netlink.commands import proc_path

    assert proc_path("net.ipv4.conf.cali1.proxy_arp=1") == (Path("/proc/sys/net/ipv4/conf/cali1/proxy_arp"), "1")
    assert proc_path("net.ipv4.neigh.eth0.100.proxy_delay=0") == (
        Path("/proc/sys/net/ipv4/neigh/eth0.100/proxy_delay"), "0")

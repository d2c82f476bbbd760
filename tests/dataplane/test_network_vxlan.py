"""Felix's network between hosts against the real kernel: VXLAN (device, FDB, neighbours, routes), CrossSubnet,
repair, removal, and IP-in-IP where the kernel has it.

Each test builds hosts on a fabric (tests/helpers/hosts.py: namespaces, unique per run, deleted afterwards) and
runs, per host, the dataplane driver Felix builds (`calico.dataplane.factory.create_driver`: firewall, workload
routes, network manager) inside that host's namespace, fed the events the calculation graph would send that
host. Packets are real; "went through the tunnel" is read from the device's own counters.
Run under the shared lock: `flock /tmp/calico-netns.lock .venv/bin/python -m pytest tests/dataplane/test_network_vxlan.py`.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from calico.calculation import events as ev
from tests.helpers.hosts import Drivers, Fabric, Host, Workload, sh
from tests.helpers.network_events import (
    ALLOW_PROFILE,
    direct_route,
    ipip_route,
    local_block,
    pool,
    vtep,
    vxlan_route,
    workload,
)

pytestmark = pytest.mark.heavy

POOL4, POOL6 = "198.18.0.0/16", "fd00:1::/48"


def block4(h: Host) -> str:
    return f"198.18.{h.name[1:]}.0/26"


def block6(h: Host) -> str:
    return f"fd00:1:0:{h.name[1:]}::/122"


def tunnel4(h: Host) -> str:
    return f"198.18.{h.name[1:]}.1"


def tunnel6(h: Host) -> str:
    return f"fd00:1:0:{h.name[1:]}::1"


def endpoint(wl: Workload) -> ev.WorkloadEndpointUpdate:
    return workload(wl.name, wl.iface, wl.ipv4, wl.ipv6)


def events_for(fab: Fabric, me: Host, mode: str) -> list[ev.DataplaneEvent]:
    """What the calculation graph sends `me` for a pool in `mode`: pools, every VTEP, routes, its workloads."""
    hosts = [h for h in fab.hosts.values() if h.name != "out"]
    out: list[ev.DataplaneEvent] = [pool(POOL4, mode), pool(POOL6, mode), ALLOW_PROFILE]
    out += [vtep(h.name, h.ipv4, tunnel4(h), h.ipv6, tunnel6(h)) for h in hosts]
    for h in hosts:
        if h is me:
            out += [local_block(block4(h), h.name), local_block(block6(h), h.name)]
        elif mode == "CrossSubnet" and h.subnet == me.subnet:
            out += [direct_route(block4(h), h.name, h.ipv4), direct_route(block6(h), h.name, h.ipv6)]
        else:
            out += [vxlan_route(block4(h), h.name, tunnel4(h)), vxlan_route(block6(h), h.name, tunnel6(h))]
    out += [endpoint(wl) for wl in fab.workloads.values() if wl.host is me]
    return [*out, ev.InSync()]


def link_details(ns: str, dev: str) -> dict[str, object]:
    [link] = json.loads(sh("ip", "-n", ns, "-d", "-j", "link", "show", "dev", dev))
    return link  # type: ignore[no-any-return]


def routes(ns: str, fam: str = "-4") -> str:
    return sh("ip", "-n", ns, fam, "route", "show", "proto", "80")


async def build(fab: Fabric, drivers: Drivers, mode: str, layout: dict[str, int]) -> dict[str, Host]:
    """Hosts (name -> subnet), one workload each (wN), every driver fed its events."""
    hosts = {name: fab.add_host(name, subnet, int(name[1:])) for name, subnet in layout.items()}
    for h in hosts.values():
        n = h.name[1:]
        fab.add_workload(h, f"w{n}", f"198.18.{n}.10", f"fd00:1:0:{n}::10")
    for h in hosts.values():
        driver = await drivers.start(h)
        await driver.apply(events_for(fab, h, mode))
    return hosts


# --- tests ---------------------------------------------------------------------------------------------------


async def test_vxlan_carries_traffic_between_hosts_through_the_device(fab: Fabric, drivers: Drivers) -> None:
    hosts = await build(fab, drivers, "Always", {"h1": 1, "h2": 1})
    h1, h2 = hosts["h1"], hosts["h2"]
    w1, w2 = fab.workloads["w1"], fab.workloads["w2"]

    dev = link_details(h1.netns, "vxlan.calico")
    info = dev["linkinfo"]["info_data"]  # type: ignore[index]
    assert (info["id"], info["port"], info["local"], info["learning"], info["link"]) == (
        4096, 4789, h1.ipv4, False, "eth0")
    assert dev["mtu"] == 1450 and dev["address"] == vtep("h1", "", "x").mac
    assert link_details(h1.netns, "vxlan-v6.calico")["mtu"] == 1430
    assert f"{block4(h2)} via {tunnel4(h2)} dev vxlan.calico onlink" in routes(h1.netns)
    assert f"blackhole {block4(h1)}" in routes(h1.netns)
    assert f"{tunnel4(h2)} lladdr {vtep('h2', '', 'x').mac} PERMANENT" in sh(
        "ip", "-n", h1.netns, "neigh", "show", "dev", "vxlan.calico")
    assert f"{vtep('h2', '', 'x').mac} dst {h2.ipv4} self permanent" in sh(
        "bridge", "-n", h1.netns, "fdb", "show", "dev", "vxlan.calico")

    tx4, _ = fab.counters(h1.netns, "vxlan.calico")
    _, rx4 = fab.counters(h2.netns, "vxlan.calico")
    assert fab.ping(w1.netns, w2.ipv4, count=3)
    assert fab.counters(h1.netns, "vxlan.calico")[0] >= tx4 + 3  # the packets went out through the tunnel
    assert fab.counters(h2.netns, "vxlan.calico")[1] >= rx4 + 3  # and came in through it
    tx6, _ = fab.counters(h1.netns, "vxlan-v6.calico")
    assert fab.ping(w1.netns, w2.ipv6 or "", count=3)
    assert fab.counters(h1.netns, "vxlan-v6.calico")[0] >= tx6 + 3
    # Read back, the kernel holds exactly what was planned: a refresh changes nothing.
    plans = drivers.network(h1).applied_plans
    await drivers.by_host["h1"].refresh()
    assert drivers.network(h1).applied_plans == plans


async def test_crosssubnet_native_within_a_subnet_and_encapsulated_across(fab: Fabric, drivers: Drivers) -> None:
    hosts = await build(fab, drivers, "CrossSubnet", {"h1": 1, "h2": 1, "h3": 2})
    h1, h2 = hosts["h1"], hosts["h2"]
    w1, w2, w3 = fab.workloads["w1"], fab.workloads["w2"], fab.workloads["w3"]
    assert f"{block4(h2)} via {h2.ipv4} dev eth0" in routes(h1.netns)
    assert f"{block6(h2)} via {h2.ipv6} dev eth0" in routes(h1.netns, "-6")
    before = fab.counters(h1.netns, "vxlan.calico")
    assert fab.ping(w1.netns, w2.ipv4, count=3) and fab.ping(w1.netns, w2.ipv6 or "")
    assert fab.counters(h1.netns, "vxlan.calico") == before  # native: the tunnel saw nothing
    assert fab.ping(w1.netns, w3.ipv4, count=3)
    assert fab.counters(h1.netns, "vxlan.calico")[0] >= before[0] + 3  # across subnets: encapsulated


async def test_device_deleted_is_repaired_and_a_removed_node_leaves_nothing(fab: Fabric, drivers: Drivers) -> None:
    hosts = await build(fab, drivers, "Always", {"h1": 1, "h2": 1, "h3": 2})
    h1, h2, h3 = hosts["h1"], hosts["h2"], hosts["h3"]
    w1, w2 = fab.workloads["w1"], fab.workloads["w2"]
    d1 = drivers.by_host["h1"]
    workload_routes = f"{w1.ipv4} dev {w1.iface} scope link"
    assert workload_routes in routes(h1.netns)

    sh("ip", "-n", h1.netns, "link", "del", "vxlan.calico")  # someone deletes the device
    assert not fab.ping(w1.netns, w2.ipv4)
    await d1.refresh()
    assert fab.ping(w1.netns, w2.ipv4, count=2)
    assert f"{block4(h2)} via {tunnel4(h2)} dev vxlan.calico onlink" in routes(h1.netns)

    # h3 goes away: the graph removes its routes, then its VTEP.
    await d1.apply([ev.RouteRemove(block4(h3)), ev.RouteRemove(block6(h3)), ev.VTEPRemove("h3")])
    assert block4(h3) not in routes(h1.netns) and tunnel4(h3) not in sh("ip", "-n", h1.netns, "neigh")
    assert h3.ipv4 not in sh("bridge", "-n", h1.netns, "fdb", "show", "dev", "vxlan.calico")
    assert fab.ping(w1.netns, w2.ipv4)  # the others are untouched

    # VXLAN goes away (no VXLAN pool): nothing of it stays; the workload routes (the RouteManager's) do.
    await d1.apply([ev.RouteRemove(block4(h2)), ev.RouteRemove(block6(h2)), pool(POOL4), pool(POOL6)])
    assert "vxlan" not in sh("ip", "-n", h1.netns, "link", "show")
    assert routes(h1.netns).strip() == workload_routes
    assert "blackhole" not in routes(h1.netns, "-6")
    await d1.refresh()  # and the two managers leave each other's routes alone on read-back
    assert routes(h1.netns).strip() == workload_routes


async def test_restarted_driver_keeps_the_tunnel_and_changes_nothing(fab: Fabric, drivers: Drivers) -> None:
    hosts = await build(fab, drivers, "Always", {"h1": 1, "h2": 1})
    h1, w1, w2 = hosts["h1"], fab.workloads["w1"], fab.workloads["w2"]
    await drivers.by_host["h1"].stop()
    assert fab.ping(w1.netns, w2.ipv4)  # nobody home: the kernel keeps forwarding
    again = await drivers.start(h1)
    assert fab.ping(w1.netns, w2.ipv4)  # started: read back only
    await again.apply(events_for(fab, h1, "Always"))
    assert drivers.network(h1).applied_plans == 0  # the kernel already held it all
    assert fab.ping(w1.netns, w2.ipv4)


def _kernel_has_ipip(ns: str) -> bool:
    probe = subprocess.run(["ip", "-n", ns, "link", "add", "ipipprobe", "type", "ipip"], capture_output=True,
                           check=False)
    subprocess.run(["ip", "-n", ns, "link", "del", "ipipprobe"], capture_output=True, check=False)
    return probe.returncode == 0


async def test_ipip_carries_traffic_through_tunl0(fab: Fabric, drivers: Drivers) -> None:
    h1, h2 = fab.add_host("h1", 1, 1), fab.add_host("h2", 1, 2)
    if not _kernel_has_ipip(h1.netns):
        pytest.skip("this kernel has no ipip device type (`ip link add ... type ipip` fails): IP-in-IP is only "
                    "rendered and unit-tested here (tests/unit/test_network_plan.py, test_network_manager.py)")
    w1, w2 = fab.add_workload(h1, "w1", "198.18.1.10"), fab.add_workload(h2, "w2", "198.18.2.10")
    for me, other, wl in ((h1, h2, w1), (h2, h1, w2)):
        driver = await drivers.start(me)
        await driver.apply([
            pool(POOL4, ipip="Always"), ALLOW_PROFILE,
            ev.VTEPUpdate(me.name, me.ipv4, None, None, ipip_addr=tunnel4(me)),
            ipip_route(block4(other), other.name, other.ipv4), local_block(block4(me), me.name), endpoint(wl),
            ev.InSync(),
        ])
    before = fab.counters(h1.netns, "tunl0")
    assert fab.ping(w1.netns, w2.ipv4, count=3)
    assert fab.counters(h1.netns, "tunl0")[0] >= before[0] + 3
    assert link_details(h1.netns, "tunl0")["mtu"] == 1480

"""RouteManager against a real kernel: routes, link monitoring, sysctls, conntrack, drift and reachability.

Each test builds its own host namespace with workloads wired WITHOUT host routes or host-side sysctls
(tests/helpers/netns.py, host_routes=False, host_sysctls=False): everything the host side needs comes from
the manager under test, which works only inside the world's host namespace. Run under the shared lock:
`flock /tmp/calico-netns.lock .venv/bin/python -m pytest tests/dataplane/test_routes.py`.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable

import pytest

from calico.calculation import events as ev
from calico.dataplane.netlink import RTPROT_CALICO, RouteManager
from tests.helpers.netns import Workload, World, sh

pytestmark = pytest.mark.heavy

V4 = {"a": "198.18.1.2", "b": "198.18.1.3"}
V6 = {"a": "fd00:c411:0:1::2", "b": "fd00:c411:0:1::3"}


def wire(world: World, *names: str) -> list[Workload]:
    return [world.add_workload(n, V4[n], V6[n], host_routes=False, host_sysctls=False) for n in names]


def endpoint(wl: Workload) -> ev.WorkloadEndpointUpdate:
    return ev.WorkloadEndpointUpdate(
        endpoint_id=ev.WorkloadEndpointID("ns1", wl.name), iface=wl.iface, mac=None,
        ipv4_nets=(f"{wl.ipv4}/32",), ipv6_nets=(f"{wl.ipv6}/128",), tiers=(), profile_ids=(),
    )


def eps(*wls: Workload) -> dict[ev.WorkloadEndpointID, ev.WorkloadEndpointUpdate]:
    return {e.endpoint_id: e for e in map(endpoint, wls)}


def our_routes(world: World) -> set[str]:
    """Our routes in the host namespace, as "dst dev" strings, both families."""
    out = set()
    for fam in ("-4", "-6"):
        text = sh("ip", "-n", world.host, fam, "route", "show", "proto", str(RTPROT_CALICO)).stdout
        for line in text.splitlines():
            parts = line.split()
            dst = parts[0] if "/" in parts[0] else parts[0] + ("/128" if fam == "-6" else "/32")
            out.add(f"{dst} {parts[parts.index('dev') + 1]}")
    return out


def routes_of(wl: Workload) -> set[str]:
    return {f"{wl.ipv4}/32 {wl.iface}", f"{wl.ipv6}/128 {wl.iface}"}


async def wait_for(cond: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until cond() held; fails after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_routes_follow_interface_state(world: World) -> None:
    a, b = wire(world, "a", "b")
    sh("ip", "-n", world.host, "link", "set", b.iface, "down")
    async with RouteManager(world.host) as mgr:
        await mgr.update(eps(a, b))
        assert our_routes(world) == routes_of(a)  # b's interface is down: no route yet
        assert mgr.endpoint_status() == {endpoint(a).endpoint_id: "up", endpoint(b).endpoint_id: "down"}

        sh("ip", "-n", world.host, "link", "set", b.iface, "up")
        await wait_for(lambda: our_routes(world) == routes_of(a) | routes_of(b))

        sh("ip", "-n", world.host, "link", "set", a.iface, "down")
        await wait_for(lambda: our_routes(world) == routes_of(b))
        took = await wait_for(lambda: mgr.endpoint_status()[endpoint(a).endpoint_id] == "down")
        assert took < 0.5, f"link down took {took:.3f}s to notice"

        sh("ip", "-n", world.host, "link", "set", a.iface, "up")
        await wait_for(lambda: our_routes(world) == routes_of(a) | routes_of(b))

        # The workload side going down takes the host side's carrier with it (LOWERLAYERDOWN). The kernel
        # keeps routes over a carrier-less link (flagged linkdown): removing them is the manager's doing.
        sh("ip", "-n", b.netns, "link", "set", "eth0", "down")
        took = await wait_for(lambda: our_routes(world) == routes_of(a))
        assert took < 0.5, f"carrier loss took {took:.3f}s to act on"
        sh("ip", "-n", b.netns, "link", "set", "eth0", "up")
        await wait_for(lambda: our_routes(world) == routes_of(a) | routes_of(b))

        # The workload's namespace is deleted: its veth vanishes, and so does the route.
        sh("ip", "netns", "del", b.netns)
        await wait_for(lambda: our_routes(world) == routes_of(a))
        await wait_for(lambda: mgr.endpoint_status()[endpoint(b).endpoint_id] == "down")


async def test_sysctls_and_reachability(world: World) -> None:
    a, b = wire(world, "a", "b")
    async with RouteManager(world.host) as mgr:
        await mgr.update(eps(a, b))
        for iface in (a.iface, b.iface):
            got = sh("ip", "netns", "exec", world.host, "sysctl", "-n",
                     f"net.ipv4.conf.{iface}.proxy_arp", f"net.ipv4.neigh.{iface}.proxy_delay",
                     f"net.ipv4.conf.{iface}.forwarding", f"net.ipv6.conf.{iface}.forwarding",
                     f"net.ipv4.conf.{iface}.rp_filter", f"net.ipv6.conf.{iface}.accept_ra",
                     f"net.ipv6.conf.{iface}.disable_ipv6").stdout.split()
            assert got == ["1", "0", "1", "1", "1", "0", "0"], iface
        # Host <-> workload and workload <-> workload, both families, with only the manager's routes.
        assert world.probe(world.host, a.ipv4, "icmp")
        assert world.probe(world.host, a.ipv6, "icmp")
        assert world.probe(a, world.host_ipv4, "icmp")
        assert world.probe(a, world.host_ipv6, "icmp")
        assert world.probe(a, b.ipv4, "icmp")
        assert world.probe(a, b.ipv6, "icmp")
        assert world.probe(b, a.ipv4, "icmp")
        assert world.probe(b, a.ipv6, "icmp")
        # Without the route the workload is unreachable again: the route is what carries the traffic.
        await mgr.update(eps(b))
        assert not world.probe(b, a.ipv4, "icmp", timeout=0.5)


async def test_endpoint_removed_flushes_conntrack(world: World) -> None:
    if not shutil.which("conntrack"):
        pytest.skip("conntrack not installed")
    (a,) = wire(world, "a")
    # Conntrack only tracks in a namespace whose ruleset uses it: a table of the test's own, in the world.
    nft = ("ip", "netns", "exec", world.host, "nft")
    sh(*nft, "add", "table", "inet", "cttest")
    sh(*nft, "add", "chain", "inet", "cttest", "out", "{ type filter hook output priority 0; }")
    sh(*nft, "add", "rule", "inet", "cttest", "out", "ct", "state", "new", "counter")
    async with RouteManager(world.host) as mgr:
        await mgr.update(eps(a))
        for ip in (a.ipv4, a.ipv6):
            world.probe(world.host, ip, "udp", port=5353)
        listing = sh("ip", "netns", "exec", world.host, "conntrack", "-L", "-p", "udp", check=False).stdout
        listing += sh("ip", "netns", "exec", world.host, "conntrack", "-L", "-f", "ipv6", "-p", "udp",
                      check=False).stdout
        assert a.ipv4 in listing and a.ipv6 in listing, listing
        await mgr.update({})
        assert our_routes(world) == set()
        after = sh("ip", "netns", "exec", world.host, "conntrack", "-L", check=False).stdout
        after += sh("ip", "netns", "exec", world.host, "conntrack", "-L", "-f", "ipv6", check=False).stdout
        assert a.ipv4 not in after and a.ipv6 not in after, after


async def test_leftovers_wait_for_reconcile_and_drift_is_repaired(world: World) -> None:
    a, b = wire(world, "a", "b")
    proto = str(RTPROT_CALICO)
    # A previous run left routes of ours: a's (still wanted) and b's (b is unknown to this run).
    for wl in (a, b):
        sh("ip", "-n", world.host, "route", "add", f"{wl.ipv4}/32", "dev", wl.iface, "scope", "link", "proto", proto)
    sh("ip", "-n", world.host, "route", "add", "198.18.0.200/32", "dev", "lo", "proto", "static")  # not ours
    async with RouteManager(world.host, refresh_interval=0.3) as mgr:
        await mgr.update(eps(a))
        assert our_routes(world) == routes_of(a) | {f"{b.ipv4}/32 {b.iface}"}  # leftover kept until in-sync
        await mgr.reconcile()
        assert our_routes(world) == routes_of(a)
        assert "198.18.0.200" in sh("ip", "-n", world.host, "route", "show").stdout  # others' routes untouched

        # Drift: someone deletes our route; the periodic refresh puts it back.
        sh("ip", "-n", world.host, "route", "del", f"{a.ipv4}/32")
        sh("ip", "-n", world.host, "-6", "route", "del", f"{a.ipv6}/128")
        await wait_for(lambda: our_routes(world) == routes_of(a))


async def test_restart_does_not_disturb(world: World) -> None:
    (a,) = wire(world, "a")
    async with RouteManager(world.host) as mgr:
        await mgr.update(eps(a))
    assert our_routes(world) == routes_of(a)  # stop() leaves routes in place
    async with RouteManager(world.host) as mgr:
        assert set(mgr.routes()) == {f"{a.ipv4}/32", f"{a.ipv6}/128"}  # read back, not flushed
        before = sh("ip", "-n", world.host, "route", "show", "proto", str(RTPROT_CALICO)).stdout
        await mgr.update(eps(a))
        await mgr.reconcile()
        assert sh("ip", "-n", world.host, "route", "show", "proto", str(RTPROT_CALICO)).stdout == before

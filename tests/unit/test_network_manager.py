"""NetworkManager over the in-memory kernel (FakeNetlink), and KernelDriver feeding it: restart safety, work
proportional to the change, repair at refresh, VXLAN going away, this kernel's missing ipip, the MTU file.
The same paths run against the real kernel in tests/dataplane/test_network_vxlan.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.driver import KernelDriver
from calico.dataplane.network import FakeNetlink, NetworkManager
from calico.dataplane.network.model import HostLink, NetRoute
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.fake import FakeNft
from calico.dataplane.state import DesiredState
from tests.helpers.network_events import config, ipip_route, local_block, pool, state, vtep, vxlan_route

ETH0 = HostLink("eth0", 2, 1500, True, ("198.19.1.1/24",))
POOL4 = "198.18.0.0/16"
ME = vtep("h1", "198.19.1.1", "198.18.0.1")
H2 = vtep("h2", "198.19.1.2", "198.18.1.1")
H3 = vtep("h3", "198.19.2.3", "198.18.2.1")
WORLD = [pool(POOL4, "Always"), ME, H2, H3, vxlan_route("198.18.1.0/26", "h2", "198.18.1.1"),
         vxlan_route("198.18.2.0/26", "h3", "198.18.2.1"), local_block("198.18.0.0/26", "h1")]


async def started(kernel: FakeNetlink, cfg: DataplaneConfig | None = None) -> NetworkManager:
    mgr = NetworkManager(cfg or config(), kernel, refresh_interval=0)
    await mgr.start()
    return mgr


async def apply(mgr: NetworkManager, s: DesiredState, *events: ev.DataplaneEvent) -> None:
    s.apply_all(events)
    d = s.take_dirty()
    await mgr.update(s, d.vteps, d.routes, bool(d.pools))


async def test_first_update_builds_everything_then_one_change_is_one_request() -> None:
    kernel = FakeNetlink((ETH0,))
    mgr = await started(kernel)
    assert kernel.requests == 0  # start only reads
    s = state(*WORLD)
    await apply(mgr, s)
    held = kernel.held
    assert set(held.devices) == {"vxlan.calico"} and len(held.neighbours) == len(held.fdb) == 2
    assert set(held.routes) == {"198.18.1.0/26", "198.18.2.0/26", "198.18.0.0/26"}
    before = kernel.requests
    await apply(mgr, s, vxlan_route("198.18.3.0/26", "h3", "198.18.2.1"))
    assert kernel.requests - before == 1
    before = kernel.requests
    await apply(mgr, s, ev.RouteRemove("198.18.3.0/26"))
    assert kernel.requests - before == 1 and "198.18.3.0/26" not in held.routes
    before = kernel.requests
    await apply(mgr, s)  # nothing changed: nothing sent
    assert kernel.requests == before


async def test_a_restarted_manager_changes_nothing_that_is_right() -> None:
    kernel = FakeNetlink((ETH0,))
    await apply(await started(kernel), state())
    s = state(*WORLD)
    await apply(await started(kernel), s)
    before = kernel.requests
    again = await started(kernel)
    assert kernel.requests == before  # reading back changes nothing
    await apply(again, state(*WORLD))
    assert kernel.requests == before  # the kernel already holds the desired state


async def test_refresh_repairs_a_deleted_device_and_a_foreign_route_change() -> None:
    kernel = FakeNetlink((ETH0,))
    mgr = await started(kernel)
    s = state(*WORLD)
    await apply(mgr, s)
    want = dataclasses.replace(kernel.held, devices=dict(kernel.held.devices), neighbours=dict(kernel.held.neighbours),
                               fdb=dict(kernel.held.fdb), routes=dict(kernel.held.routes))
    kernel.delete_device("vxlan.calico")
    kernel.add_route(NetRoute("198.18.2.0/26", gateway="198.19.9.9", dev="eth0"))
    assert kernel.held != want
    await mgr.refresh()
    assert kernel.held == want


async def test_mtu_drift_is_set_back_in_place() -> None:
    kernel = FakeNetlink((ETH0,))
    mgr = await started(kernel)
    await apply(mgr, state(*WORLD))
    kernel.set_mtu("vxlan.calico", 9000)
    await mgr.refresh()
    assert kernel.held.devices["vxlan.calico"].mtu == 1450
    assert mgr.last_plan is not None and set(mgr.last_plan.modify_devices) == {"vxlan.calico"}
    assert not mgr.last_plan.create_devices


async def test_a_removed_node_leaves_nothing_and_no_vxlan_pool_leaves_nothing_at_all() -> None:
    kernel = FakeNetlink((ETH0,))
    mgr = await started(kernel)
    s = state(*WORLD)
    await apply(mgr, s)
    await apply(mgr, s, ev.RouteRemove("198.18.2.0/26"), ev.VTEPRemove("h3"))
    assert ("vxlan.calico", "198.18.2.1") not in kernel.held.neighbours
    assert ("vxlan.calico", H3.mac) not in kernel.held.fdb and "198.18.2.0/26" not in kernel.held.routes
    await apply(mgr, s, ev.RouteRemove("198.18.1.0/26"), pool(POOL4))  # the pool is no longer VXLAN
    assert kernel.held.devices == {} and kernel.held.routes == {}  # nor the blackhole: BIRD's business now


async def test_this_kernels_missing_ipip_fails_only_ipip_and_is_retried() -> None:
    kernel = FakeNetlink((ETH0,), unsupported_kinds=frozenset({"ipip"}))
    mgr = await started(kernel)
    me = dataclasses.replace(ME, ipip_addr="198.18.0.2")
    s = state(pool(POOL4, "Always"), pool("198.20.0.0/16", ipip="Always"), me, H2,
              vxlan_route("198.18.1.0/26", "h2", "198.18.1.1"), ipip_route("198.20.1.0/26", "h2", "198.19.1.2"))
    await apply(mgr, s)
    assert set(kernel.held.devices) == {"vxlan.calico"} and set(kernel.held.routes) == {"198.18.1.0/26"}
    assert mgr.retry_in == 1.0  # the retry is scheduled
    kernel.unsupported_kinds = frozenset()  # (a kernel that gained the module)
    await mgr.refresh()
    assert set(kernel.held.devices) == {"vxlan.calico", "tunl0"} and "198.20.1.0/26" in kernel.held.routes
    assert mgr.retry_in is None


async def test_mtu_file_written_when_its_directory_exists(tmp_path: Path) -> None:
    path = tmp_path / "mtu"
    mgr = await started(FakeNetlink((ETH0,)), config(mtu_file=str(path)))
    await apply(mgr, state(pool(POOL4), ME, mtu_file=str(path)))
    assert path.read_text() == "1500\n"  # no tunnel: the host MTU
    s = state(*WORLD, mtu_file=str(path))
    mgr = await started(FakeNetlink((ETH0,)), s.config)
    await apply(mgr, s)
    assert path.read_text() == "1450\n"
    missing = tmp_path / "no-such-dir" / "mtu"
    mgr = await started(FakeNetlink((ETH0,)), config(mtu_file=str(missing)))
    await apply(mgr, state(*WORLD))
    assert not missing.parent.exists()  # never created


async def test_kernel_driver_feeds_the_network_what_changed_although_the_firewall_takes_the_record() -> None:
    kernel, nft = FakeNetlink((ETH0,)), FakeNft()
    driver = KernelDriver(NftBackend(nft), config(), network=NetworkManager(config(), kernel, refresh_interval=0))
    await driver.start()
    await driver.apply(WORLD)
    assert kernel.requests == 0  # nothing before InSync
    await driver.apply([ev.InSync()])
    assert set(kernel.held.routes) == {"198.18.1.0/26", "198.18.2.0/26", "198.18.0.0/26"}
    before = kernel.requests
    await driver.apply([vxlan_route("198.18.3.0/26", "h3", "198.18.2.1")])
    assert kernel.requests - before == 1
    kernel.delete_device("vxlan.calico")
    await driver.refresh()
    assert "vxlan.calico" in kernel.held.devices and "198.18.3.0/26" in kernel.held.routes
    await driver.stop()

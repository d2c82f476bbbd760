"""Real packets through host endpoint policy, failsafes and the OpenStack metadata DNAT, on both backends.

Each test builds a host namespace with one or two workloads and an external client namespace joined to the
host by a second uplink (`World.add_external`), folds hand-written events into a `DesiredState`, applies it
with the nftables or the iptables (nf_tables flavour) backend inside the host namespace, and probes TCP.
Only the test's own namespaces are touched; run under `flock /tmp/calico-netns.lock`.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Iterator

import pytest

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig, FailsafePort, MetadataTarget
from calico.dataplane.iptables import IptablesBackend
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.transport import LibNftTransport
from calico.dataplane.state import DesiredState
from calico.lab.probe import probe as lab_probe
from tests.helpers.netns import External, World

pytestmark = pytest.mark.heavy

V4 = {"a": "198.18.1.2", "b": "198.18.1.3"}
V6 = {"a": "fd00:c411:0:1::2", "b": "fd00:c411:0:1::3"}
DROP_T = 0.4  # probes expected to fail wait this long

_ids = itertools.count()


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id=f"h{next(_ids)}", **kw)  # type: ignore[arg-type]


def gpid(name: str) -> ev.PolicyID:
    return ev.PolicyID("default", name)  # host endpoint policy is global


def gpolicy(name: str, inbound=(), outbound=(), forward: bool = False) -> ev.PolicyUpdate:
    return ev.PolicyUpdate(gpid(name), tuple(inbound), tuple(outbound), apply_on_forward=forward)


def tier(ingress=(), egress=()) -> ev.TierInfo:
    return ev.TierInfo("default", "Deny", tuple(gpid(n) for n in ingress), tuple(gpid(n) for n in egress))


def hep(iface: str, tiers=(), forward_tiers=(), profiles=(), name: str = "h1") -> ev.HostEndpointUpdate:
    return ev.HostEndpointUpdate(name, iface, (), tuple(tiers), (), (), tuple(forward_tiers), tuple(profiles))


ALLOW_ALL = ev.ProfileUpdate("allow-all", inbound=(rule(),), outbound=(rule(),))


def workload(world: World, name: str, profiles=("allow-all",)) -> ev.WorkloadEndpointUpdate:
    wl = world.workloads[name]
    return ev.WorkloadEndpointUpdate(
        ev.WorkloadEndpointID("ns1", name), wl.iface, None, (f"{wl.ipv4}/32",), (f"{wl.ipv6}/128",), (),
        tuple(profiles),
    )


@pytest.fixture(params=["nft", "iptables"])
def fw(request: pytest.FixtureRequest, world: World) -> Iterator[NftBackend | IptablesBackend]:
    if request.param == "nft":
        backend = NftBackend(LibNftTransport(world.host))
        try:
            yield backend
        finally:
            backend.close()  # its libnftables thread holds the namespace until it ends
        return
    for tool in ("iptables-nft-restore", "ip6tables-nft-restore", "ipset"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    yield IptablesBackend(world.host, "nft")


@pytest.fixture
def ext(world: World) -> External:
    for name in ("a", "b"):
        world.add_workload(name, V4[name], V6[name])
    return world.add_external()


async def setup(fw: NftBackend | IptablesBackend, events: list, **config: object) -> DesiredState:
    state = DesiredState(DataplaneConfig(**config))  # type: ignore[arg-type]
    state.apply_all([ALLOW_ALL, *events, ev.InSync()])
    await fw.apply(state)
    return state


def can(world: World, src: str, dst_ip: str, port: int = 8080, timeout: float = 1.0) -> bool:
    return world.probe(src, dst_ip, "tcp", port, timeout=timeout)


def cannot(world: World, src: str, dst_ip: str, port: int = 8080) -> bool:
    return not world.probe(src, dst_ip, "tcp", port, timeout=DROP_T)


def probe_via(world: World, src_ns: str, dst_ip: str, dst_port: int, listen_ip: str, listen_port: int,
              timeout: float = 1.0) -> bool:
    """TCP round trip to dst_ip:dst_port answered by a listener on listen_ip:listen_port in the host (DNAT)."""
    result = lab_probe(src_ns, world.host, dst_ip, "tcp", dst_port, timeout, listen=(listen_ip, listen_port))
    if result.error:
        raise RuntimeError(result.error)
    return result.ok


# --- tests ----------------------------------------------------------------------------------------------


async def test_no_host_endpoint_leaves_host_traffic_alone(world: World, ext: External, fw) -> None:
    await setup(fw, [workload(world, "a"), workload(world, "b")])
    assert can(world, ext.netns, ext.host_ip) and can(world, ext.netns, ext.host_ip, 9090)
    assert can(world, world.host, ext.ipv4)
    assert can(world, ext.netns, V4["a"])  # forwarded to a workload: only the workload's policy applies


async def test_ingress_policy_and_inbound_failsafe(world: World, ext: External, fw) -> None:
    await setup(fw, [
        gpolicy("web", inbound=[rule(protocol="TCP", dst_ports=((8080, 8080),))]),
        workload(world, "a"),
        hep(ext.host_iface, tiers=[tier(ingress=["web"])]),
    ])
    assert can(world, ext.netns, ext.host_ip, 8080)
    assert cannot(world, ext.netns, ext.host_ip, 9090)  # tier applied, nothing matched: default Deny
    assert can(world, ext.netns, ext.host_ip, 22)  # failsafe inbound
    # No egress policy and no profile: the host may not open connections out of it, except failsafes.
    assert cannot(world, world.host, ext.ipv4, 8080)
    assert can(world, world.host, ext.ipv4, 179)


async def test_deny_all_host_endpoint_keeps_failsafes(world: World, ext: External, fw) -> None:
    await setup(fw, [
        gpolicy("deny-all", inbound=[rule("Deny")], outbound=[rule("Deny")]),
        hep(ext.host_iface, tiers=[tier(ingress=["deny-all"], egress=["deny-all"])], profiles=("allow-all",)),
    ])
    assert cannot(world, ext.netns, ext.host_ip, 8080)
    assert can(world, ext.netns, ext.host_ip, 22)
    assert cannot(world, world.host, ext.ipv4, 8080)
    assert can(world, world.host, ext.ipv4, 2379)  # failsafe outbound


async def test_egress_policy_limits_host_to_external(world: World, ext: External, fw) -> None:
    await setup(fw, [
        gpolicy("out-9000", outbound=[rule(protocol="TCP", dst_ports=((9000, 9000),))]),
        hep(ext.host_iface, tiers=[tier(egress=["out-9000"])], profiles=("allow-all",)),
    ], failsafe_outbound=(FailsafePort("tcp", 6666),))
    assert can(world, world.host, ext.ipv4, 9000) and can(world, world.host, ext.ipv4, 6666)
    assert cannot(world, world.host, ext.ipv4, 8080) and cannot(world, world.host, ext.ipv4, 179)
    assert can(world, ext.netns, ext.host_ip, 8080)  # ingress: no policy, the profile allows


async def test_wildcard_host_endpoint_never_polices_workloads(world: World, ext: External, fw) -> None:
    await setup(fw, [workload(world, "a"), workload(world, "b"), hep("*")])
    assert cannot(world, ext.netns, ext.host_ip, 8080)  # "*" covers the uplink: no policy, no profile
    assert can(world, ext.netns, ext.host_ip, 22)
    wl_a = world.workloads["a"]
    assert can(world, wl_a.netns, V4["b"]) and world.probe(wl_a, V6["b"], "tcp", 8080, timeout=1.0)
    assert can(world, world.host, V4["a"])  # host -> local workload
    assert can(world, ext.netns, V4["a"])  # forwarded: no applyOnForward policy, left alone


async def test_apply_on_forward_blocks_forwarded_traffic(world: World, ext: External, fw) -> None:
    await setup(fw, [
        gpolicy("fwd", inbound=[rule("Deny", protocol="TCP", dst_ports=((8080, 8080),)), rule()], forward=True),
        workload(world, "a"),
        hep(ext.host_iface, forward_tiers=[tier(ingress=["fwd"])], profiles=("allow-all",)),
    ])
    assert cannot(world, ext.netns, V4["a"], 8080)
    assert can(world, ext.netns, V4["a"], 8081)
    assert can(world, ext.netns, ext.host_ip, 8080)  # to the host itself: normal policy (profile) applies
    # Replies of the workload's own connections out through the uplink pass; new ones are allowed (no egress).
    assert can(world, world.workloads["a"].netns, ext.ipv4, 8080)


async def test_host_endpoint_update_and_removal(world: World, ext: External, fw) -> None:
    state = await setup(fw, [hep(ext.host_iface)])
    assert cannot(world, ext.netns, ext.host_ip, 8080)
    # A policy that arrives after the endpoint (incremental), then the endpoint goes away.
    state.apply_all([gpolicy("web", inbound=[rule()]), hep(ext.host_iface, tiers=[tier(ingress=["web"])])])
    await fw.apply(state)
    assert can(world, ext.netns, ext.host_ip, 8080)
    state.apply(ev.HostEndpointRemove("h1"))
    await fw.apply(state)
    assert can(world, world.host, ext.ipv4, 8080)
    assert not fw.last_plan.full


async def test_metadata_dnat_reaches_host_listener(world: World, ext: External, fw) -> None:
    state = await setup(fw, [workload(world, "a", profiles=())], metadata=MetadataTarget(world.host_ipv4, 8775))
    wl_a = world.workloads["a"]
    assert probe_via(world, wl_a.netns, "169.254.169.254", 80, world.host_ipv4, 8775)
    assert cannot(world, wl_a.netns, world.host_ipv4, 8080)  # everything else to the host: egress policy drops
    # Tamper: someone empties the DNAT chain; the periodic read-back notices and puts it back.
    import subprocess

    if isinstance(fw, NftBackend):
        tamper = ["nft", "flush", "chain", "inet", "calico", "nat-prerouting"]
    else:
        tamper = ["iptables-nft", "-t", "nat", "-F", "cali-PREROUTING"]
    subprocess.run(["ip", "netns", "exec", world.host, *tamper], check=True)
    assert not probe_via(world, wl_a.netns, "169.254.169.254", 80, world.host_ipv4, 8775, timeout=DROP_T)
    assert await fw.check_and_repair(state)
    assert probe_via(world, wl_a.netns, "169.254.169.254", 80, world.host_ipv4, 8775)
    assert not await fw.check_and_repair(state)  # whole again: nothing more to repair


async def test_host_endpoint_by_expected_ip_follows_interface_addresses(world: World, ext: External, fw) -> None:
    """No interfaceName: the endpoint covers whichever interface holds its expected IP, as the kernel's addresses
    come and go (a real netlink address monitor feeding the driver)."""
    import subprocess

    from calico.dataplane.driver import KernelDriver
    from calico.dataplane.netlink.addresses import HostAddressMonitor

    extra = "198.18.200.9"
    by_ip = ev.HostEndpointUpdate("by-ip", None, (extra,), (), (), (), (), ())
    driver = KernelDriver(fw, DataplaneConfig(), addresses=HostAddressMonitor(world.host, ("cali",)))
    await driver.start()
    try:
        await driver.apply([ALLOW_ALL, workload(world, "a"), by_ip, ev.InSync()])
        assert can(world, ext.netns, ext.host_ip, 8080)  # nothing holds the expected IP yet: not policed

        async def settled(want_blocked: bool) -> bool:
            for _ in range(40):  # the address news reaches the driver asynchronously; allow up to ~2 s
                await asyncio.sleep(0.05)
                if driver.addresses is not None and (ext.host_iface in driver.state.host_addresses) == want_blocked:
                    break
            await asyncio.sleep(0.1)
            return cannot(world, ext.netns, ext.host_ip, 8080) if want_blocked else can(world, ext.netns,
                                                                                          ext.host_ip, 8080)

        subprocess.run(["ip", "-n", world.host, "addr", "add", f"{extra}/32", "dev", ext.host_iface], check=True)
        assert await settled(True)  # the uplink is now the endpoint's: no policy, no profile -> drop
        assert can(world, ext.netns, ext.host_ip, 22)  # failsafe
        subprocess.run(["ip", "-n", world.host, "addr", "del", f"{extra}/32", "dev", ext.host_iface], check=True)
        assert await settled(False)
    finally:
        await driver.stop()


def stage_hep(iface: str, untracked=(), pre_dnat=(), tiers=()) -> ev.HostEndpointUpdate:
    return ev.HostEndpointUpdate("h1", iface, (), tuple(tiers), tuple(untracked), tuple(pre_dnat), (), ())


def tracked(world: World, port: int) -> bool:
    """Does the host's conntrack table hold a TCP entry for this destination port?"""
    import subprocess

    out = subprocess.run(["ip", "netns", "exec", world.host, "conntrack", "-L", "-p", "tcp", "--dport", str(port)],
                         capture_output=True, text=True)
    return f"dport={port}" in out.stdout


async def test_do_not_track_policy(world: World, ext: External, fw) -> None:
    """Untracked (doNotTrack) policy runs before conntrack: Allow skips normal policy and leaves the flow
    untracked (so replies need an egress rule), Deny drops, no match goes on to normal policy."""
    if shutil.which("conntrack") is None:
        pytest.skip("conntrack not installed")
    await setup(fw, [
        gpolicy("dnt", inbound=[rule("Deny", protocol="TCP", dst_ports=((9090, 9090),)),
                                rule(protocol="TCP", dst_ports=((8080, 8080),))],
                outbound=[rule(protocol="TCP", src_ports=((8080, 8080),))]),
        workload(world, "a"),
        stage_hep(ext.host_iface, untracked=[tier(ingress=["dnt"], egress=["dnt"])]),
    ])
    assert can(world, ext.netns, ext.host_ip, 8080)  # allowed untracked; normal policy (none: drop) skipped
    assert not tracked(world, 8080)
    assert cannot(world, ext.netns, ext.host_ip, 9090)  # untracked Deny
    assert cannot(world, ext.netns, ext.host_ip, 7070)  # no untracked match: normal policy drops
    assert can(world, ext.netns, ext.host_ip, 22)  # failsafe, tracked as usual
    assert can(world, ext.netns, V4["a"], 7070)  # forwarded to a workload: its own policy decides


async def test_pre_dnat_policy(world: World, ext: External, fw) -> None:
    """Pre-DNAT policy polices what enters a host endpoint, forwarded traffic included: Allow skips normal host
    endpoint policy, Deny drops, no match goes on."""
    await setup(fw, [
        gpolicy("pd", inbound=[rule("Deny", protocol="TCP", dst_ports=((9090, 9090),)),
                               rule(protocol="TCP", dst_ports=((8080, 8080),))]),
        workload(world, "a"),
        stage_hep(ext.host_iface, pre_dnat=[tier(ingress=["pd"])]),
    ])
    assert can(world, ext.netns, ext.host_ip, 8080)  # pre-DNAT Allow skips normal policy (which would drop)
    assert cannot(world, ext.netns, ext.host_ip, 7070)  # no match: normal policy (none, no profile) drops
    assert cannot(world, ext.netns, V4["a"], 9090)  # forwarded to a workload: pre-DNAT still applies
    assert can(world, ext.netns, V4["a"], 8081)  # no pre-DNAT match; no applyOnForward policy; profile allows
    assert can(world, ext.netns, ext.host_ip, 22)  # failsafe


async def test_untracked_stage_is_repaired_and_removed(world: World, ext: External, fw) -> None:
    """The raw stage is read back and repaired like the rest, and goes away (chains and hooks) with its policy."""
    import subprocess

    dnt = gpolicy("dnt", inbound=[rule(protocol="TCP", dst_ports=((8080, 8080),))],
                  outbound=[rule(protocol="TCP", src_ports=((8080, 8080),))])
    state = await setup(fw, [dnt, stage_hep(ext.host_iface, untracked=[tier(ingress=["dnt"], egress=["dnt"])])])
    assert can(world, ext.netns, ext.host_ip, 8080)
    nft = isinstance(fw, NftBackend)
    tamper = (["nft", "flush", "chain", "inet", "calico", "raw-prerouting"] if nft
              else ["iptables-nft", "-t", "raw", "-F", "cali-PREROUTING"])
    subprocess.run(["ip", "netns", "exec", world.host, *tamper], check=True)
    assert cannot(world, ext.netns, ext.host_ip, 8080)  # the stage is gone: normal policy drops
    assert await fw.check_and_repair(state)
    assert can(world, ext.netns, ext.host_ip, 8080)
    state.apply(stage_hep(ext.host_iface))  # the endpoint no longer has doNotTrack policy
    await fw.apply(state)
    assert cannot(world, ext.netns, ext.host_ip, 8080)
    listing = subprocess.run(
        ["ip", "netns", "exec", world.host, *(["nft", "list", "ruleset"] if nft else ["iptables-nft-save", "-t", "raw"])],
        capture_output=True, text=True, check=True).stdout
    assert "raw-prerouting" not in listing and "cali-" not in listing
    assert not await fw.check_and_repair(state)

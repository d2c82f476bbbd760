"""Real packets through `table inet calico`, built from hand-written calculation-graph events.

Each test makes its own host namespace with workloads a, b, c (tests/helpers/netns.py), folds events into a
`DesiredState`, applies it with `NftBackend` inside the host namespace and probes TCP/UDP/ICMP, v4 and v6.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from calico.calculation import events as ev
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.state import DesiredState
from tests.helpers.netns import World, sh

pytestmark = pytest.mark.heavy

V4 = {"a": "198.18.1.2", "b": "198.18.1.3", "c": "198.18.1.4"}
V6 = {"a": "fd00:c411:0:1::2", "b": "fd00:c411:0:1::3", "c": "fd00:c411:0:1::4"}
DROP_T = 0.4  # probes expected to fail wait this long

_ids = itertools.count()


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id=f"r{next(_ids)}", **kw)  # type: ignore[arg-type]


def pid(name: str, tier: str = "default") -> ev.PolicyID:
    return ev.PolicyID(tier, name, "ns1")


def policy(name: str, tier: str = "default", inbound=(), outbound=()) -> ev.PolicyUpdate:
    return ev.PolicyUpdate(pid(name, tier), tuple(inbound), tuple(outbound))


ALLOW_OUT = ev.ProfileUpdate("allow-out", inbound=(), outbound=(rule(),))


def endpoint(world: World, name: str, tiers=(), profiles=("allow-out",), spoof=()) -> ev.WorkloadEndpointUpdate:
    wl = world.workloads[name]
    return ev.WorkloadEndpointUpdate(
        endpoint_id=ev.WorkloadEndpointID("ns1", name),
        iface=wl.iface,
        mac=None,
        ipv4_nets=(f"{wl.ipv4}/32",),
        ipv6_nets=(f"{wl.ipv6}/128",),
        tiers=tuple(tiers),
        profile_ids=tuple(profiles),
        allow_spoofed_source_prefixes=tuple(spoof),
    )


def ingress_tier(*names: str, tier: str = "default", default: str = "Deny") -> ev.TierInfo:
    return ev.TierInfo(tier, default, ingress_policies=tuple(pid(n, tier) for n in names))


@pytest.fixture
def wls(world: World) -> World:
    for name in ("a", "b", "c"):
        world.add_workload(name, V4[name], V6[name])
    return world


async def setup(backend: NftBackend, events: list) -> DesiredState:
    state = DesiredState()
    state.apply_all([ALLOW_OUT, *events, ev.InSync()])
    await backend.apply(state)
    return state


def can(world: World, src: str, dst: str, proto: str = "tcp", port: int = 8080, v6: bool = False) -> bool:
    dst_ip = (V6 if v6 else V4)[dst]
    return world.probe(world.workloads[src], dst_ip, proto, port, timeout=1.0)


def cannot(world: World, src: str, dst: str, proto: str = "tcp", port: int = 8080, v6: bool = False) -> bool:
    dst_ip = (V6 if v6 else V4)[dst]
    return not world.probe(world.workloads[src], dst_ip, proto, port, timeout=DROP_T)


# --- tests ----------------------------------------------------------------------------------------------


async def test_fail_closed_before_first_sync_and_default_drop(wls: World, backend: NftBackend) -> None:
    assert can(wls, "a", "b", "icmp")  # sanity: the wiring works without our table
    await backend.install_fail_closed()
    assert cannot(wls, "a", "b", "icmp") and cannot(wls, "a", "b", "icmp", v6=True)
    # Known endpoints with no policy and no profile: everything dropped.
    await setup(backend, [endpoint(wls, n, profiles=()) for n in "abc"])
    assert cannot(wls, "a", "b") and cannot(wls, "a", "b", v6=True) and cannot(wls, "a", "b", "udp")


async def test_allow_by_selector_set_v4_v6(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        ev.IPSetUpdate("sel-a", ev.IPSetType.NET, frozenset({f"{V4['a']}/32", f"{V6['a']}/128"})),
        policy("allow-a", inbound=[rule(protocol="TCP", src_ip_set_ids=("sel-a",))]),
        endpoint(wls, "a"), endpoint(wls, "b", tiers=[ingress_tier("allow-a")]), endpoint(wls, "c"),
    ])
    assert can(wls, "a", "b") and can(wls, "a", "b", v6=True)
    assert cannot(wls, "c", "b") and cannot(wls, "c", "b", v6=True)
    assert cannot(wls, "a", "b", "udp")  # policy allows TCP only
    # Established replies pass: b's own egress would allow nothing new towards a's ingress (no policy).
    assert cannot(wls, "b", "a")


async def test_deny_then_allow_in_later_tier(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        policy("deny-a", tier="t1", inbound=[rule("Deny", src_nets=(f"{V4['a']}/32",))]),
        policy("allow-all", tier="t2", inbound=[rule()]),
        endpoint(wls, "a"), endpoint(wls, "c"),
        endpoint(wls, "b", tiers=[ingress_tier("deny-a", tier="t1", default="Pass"), ingress_tier("allow-all", tier="t2")]),
    ])
    assert cannot(wls, "a", "b") and can(wls, "c", "b")
    assert can(wls, "a", "b", v6=True)  # the Deny names an IPv4 net only


async def test_pass_and_tier_default_action(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        ev.ProfileUpdate("never", inbound=(rule("Deny"),), outbound=()),
        policy("pass-a", tier="t1", inbound=[rule("Pass", src_nets=(f"{V4['a']}/32", f"{V6['a']}/128"))]),
        policy("allow-all", tier="t2", inbound=[rule("Log"), rule()]),
        endpoint(wls, "a"), endpoint(wls, "c"),
        endpoint(wls, "b", tiers=[ingress_tier("pass-a", tier="t1"), ingress_tier("allow-all", tier="t2")],
                 profiles=("never",)),
    ])
    assert can(wls, "a", "b") and can(wls, "a", "b", v6=True)  # Pass -> next tier allows
    assert cannot(wls, "c", "b")  # t1 applied, nothing matched -> default Deny


async def test_profile_fall_through(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        ev.ProfileUpdate("only-udp", inbound=(rule(protocol="UDP"),), outbound=()),
        ev.ProfileUpdate("icmp", inbound=(rule(protocol="ICMP"), rule(protocol="ICMPv6", icmp_type=128)), outbound=()),
        endpoint(wls, "a"), endpoint(wls, "b", profiles=("only-udp", "icmp")),
    ])
    assert can(wls, "a", "b", "udp") and can(wls, "a", "b", "icmp") and can(wls, "a", "b", "icmp", v6=True)
    assert cannot(wls, "a", "b", "tcp")


async def test_ports_ranges_and_not_ports(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        policy("ports", inbound=[rule(protocol="TCP", dst_ports=((8000, 8100),), not_dst_ports=((8080, 8080),))]),
        endpoint(wls, "a"), endpoint(wls, "b", tiers=[ingress_tier("ports")]),
    ])
    assert can(wls, "a", "b", port=8050) and can(wls, "a", "b", port=8000, v6=True)
    assert cannot(wls, "a", "b", port=8080) and cannot(wls, "a", "b", port=9000)


async def test_nets_and_not_nets(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        policy("nets", inbound=[rule(src_nets=("198.18.1.0/24", "fd00:c411:0:1::/64"),
                                     not_src_nets=(f"{V4['a']}/32", f"{V6['a']}/128"))]),
        endpoint(wls, "a"), endpoint(wls, "c"), endpoint(wls, "b", tiers=[ingress_tier("nets")]),
    ])
    assert can(wls, "c", "b") and can(wls, "c", "b", v6=True)
    assert cannot(wls, "a", "b") and cannot(wls, "a", "b", v6=True)


async def test_named_port_set(wls: World, backend: NftBackend) -> None:
    await setup(backend, [
        ev.IPSetUpdate("np-http", ev.IPSetType.IP_PORT,
                       frozenset({f"{V4['b']},tcp:8080", f"{V6['b']},tcp:8080", f"{V4['b']},udp:5353"})),
        policy("named", inbound=[rule(dst_named_port_set_ids=("np-http",))]),
        endpoint(wls, "a"), endpoint(wls, "b", tiers=[ingress_tier("named")]),
    ])
    assert can(wls, "a", "b", port=8080) and can(wls, "a", "b", port=8080, v6=True)
    assert can(wls, "a", "b", "udp", port=5353)
    assert cannot(wls, "a", "b", port=8081) and cannot(wls, "a", "b", "udp", port=8080)


async def test_unknown_workload_interface_dropped(wls: World, backend: NftBackend) -> None:
    allow_in = ev.ProfileUpdate("open", inbound=(rule(),), outbound=(rule(),))
    await setup(backend, [allow_in, endpoint(wls, "a", profiles=("open",)), endpoint(wls, "b", profiles=("open",))])
    assert can(wls, "a", "b")
    assert cannot(wls, "a", "c") and cannot(wls, "c", "a") and cannot(wls, "c", "a", "icmp", v6=True)


async def test_endpoint_to_host(wls: World, backend: NftBackend) -> None:
    state = await setup(backend, [endpoint(wls, "a")])
    a = wls.workloads["a"]
    assert not wls.probe(a, wls.host_ipv4, "tcp", 8080, timeout=DROP_T)  # default Drop
    assert not wls.probe(a, wls.host_ipv6, "icmp", timeout=DROP_T)
    assert wls.probe(a, wls.host_ipv4, "udp", 53, timeout=1.0)  # DNS allowed first
    assert wls.probe(a, wls.host_ipv6, "tcp", 53, timeout=1.0)
    state.configure(dataclasses.replace(state.config, endpoint_to_host_action="Accept"))
    plan = await backend.apply(state)
    assert plan.full  # config changes the base chains: whole table
    assert wls.probe(a, wls.host_ipv4, "tcp", 8080, timeout=1.0)
    assert wls.probe(a, wls.host_ipv6, "icmp", timeout=1.0)


async def test_spoofed_source_dropped(wls: World, backend: NftBackend) -> None:
    open_in = ev.ProfileUpdate("open-in", inbound=(rule(),), outbound=())
    state = await setup(backend, [open_in, endpoint(wls, "a"), endpoint(wls, "b", profiles=("open-in",))])
    spoof4, spoof6 = "198.18.1.99", "fd00:c411:0:1::99"
    a = wls.workloads["a"]
    wls.add_extra_address(a, spoof4)
    wls.add_extra_address(a, spoof6)
    assert wls.probe(a, V4["b"], "tcp", 8080, timeout=1.0)
    assert not wls.probe(a, V4["b"], "tcp", 8080, timeout=DROP_T, src_ip=spoof4)
    assert not wls.probe(a, V6["b"], "udp", 8080, timeout=DROP_T, src_ip=spoof6)
    state.apply(endpoint(wls, "a", spoof=(f"{spoof4}/32",)))
    await backend.apply(state)
    assert wls.probe(a, V4["b"], "tcp", 8080, timeout=1.0, src_ip=spoof4)


async def test_incremental_set_update(wls: World, backend: NftBackend) -> None:
    state = await setup(backend, [
        ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({f"{V4['a']}/32"})),
        policy("allow-sel", inbound=[rule(src_ip_set_ids=("sel",))]),
        endpoint(wls, "a"), endpoint(wls, "c"), endpoint(wls, "b", tiers=[ingress_tier("allow-sel")]),
    ])
    assert can(wls, "a", "b") and cannot(wls, "c", "b")
    state.apply(ev.IPSetDelta("sel", added=frozenset({f"{V4['c']}/32", f"{V6['c']}/128"}),
                              removed=frozenset({f"{V4['a']}/32"})))
    plan = await backend.apply(state)
    assert not plan.full
    assert all("element" in line for line in plan.text.splitlines()), plan.text
    assert can(wls, "c", "b") and can(wls, "c", "b", v6=True) and cannot(wls, "a", "b")
    # A new policy and endpoint change: still one incremental transaction.
    state.apply(policy("allow-udp", inbound=[rule(protocol="UDP")]))
    state.apply(endpoint(wls, "b", tiers=[ingress_tier("allow-sel", "allow-udp")]))
    plan = await backend.apply(state)
    assert not plan.full
    assert can(wls, "a", "b", "udp")
    # Endpoint removed: its interface falls back to the fail-closed drop.
    state.apply(ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns1", "c")))
    state.apply(ev.IPSetRemove("sel"))
    state.apply(policy("allow-sel", inbound=[rule()]))
    plan = await backend.apply(state)
    assert not plan.full and "delete chain" in plan.text and "delete set" in plan.text
    assert cannot(wls, "c", "b", "udp")
    assert not await backend.check_and_repair(state)  # the incremental result matches the model


async def test_tamper_is_detected_and_repaired(wls: World, backend: NftBackend) -> None:
    state = await setup(backend, [
        ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({f"{V4['a']}/32"})),
        policy("allow-sel", inbound=[rule(src_ip_set_ids=("sel",))]),
        endpoint(wls, "a"), endpoint(wls, "c"), endpoint(wls, "b", tiers=[ingress_tier("allow-sel")]),
    ])
    assert not await backend.check_and_repair(state)
    nft = ["ip", "netns", "exec", wls.host, "nft"]
    tw_b = f"tw-{wls.workloads['b'].iface}"
    tampering = [
        [*nft, "delete", "table", "inet", "calico"],
        [*nft, "flush", "chain", "inet", "calico", tw_b],
        [*nft, "delete", "element", "inet", "calico", "s4-sel", "{", V4["a"], "}"],
    ]
    for cmd in tampering:
        sh(*cmd)
        assert await backend.check_and_repair(state), cmd
        assert can(wls, "a", "b") and cannot(wls, "c", "b")
    assert backend.repairs == 3
    # A rule replaced in place (same rule count): b's policy jump becomes `accept`, which would open it to c.
    listing = sh(*nft, "-a", "list", "chain", "inet", "calico", tw_b).stdout
    handle = next(ln.rsplit("handle ", 1)[1] for ln in listing.splitlines() if "goto" in ln and "handle" in ln)
    sh(*nft, "replace", "rule", "inet", "calico", tw_b, "handle", handle, "accept")
    assert can(wls, "c", "b")  # the tamper really opened it
    assert await backend.check_and_repair(state)
    assert can(wls, "a", "b") and cannot(wls, "c", "b")
    assert backend.repairs == 4
    # Another table in the namespace is never touched by us.
    sh(*nft, "add", "table", "inet", "other")
    await backend.apply(state)
    assert "table inet other" in sh(*nft, "list", "tables").stdout

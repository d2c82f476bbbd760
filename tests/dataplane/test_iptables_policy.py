"""Real packets through Calico's iptables chains and ipsets, on both iptables flavours (nf_tables, legacy).

Same scenarios as `test_nft_policy.py` (whose event-building helpers are reused): each test makes its own
host namespace with workloads a, b, c, folds events into a `DesiredState`, applies it with
`IptablesBackend` inside the host namespace and probes TCP/UDP/ICMP, v4 and v6. Only commands inside the
test's namespaces are run; run under `flock /tmp/calico-netns.lock`.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from calico.calculation import events as ev
from calico.dataplane.iptables import IptablesBackend
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables import model as ipt_model
from calico.dataplane.iptables import names as ipt_names
from tests.dataplane.test_nft_policy import (  # reuse the nft suite's event builders and probes
    DROP_T,
    V4,
    V6,
    can,
    cannot,
    endpoint,
    ingress_tier,
    policy,
    rule,
    setup,
    wls,  # noqa: F401  (fixture)
)
from tests.helpers.netns import World, sh

pytestmark = pytest.mark.heavy

BOTH = pytest.mark.parametrize("flavour", ["nft", "legacy"])


@pytest.fixture
def ipt(world: World, flavour: str) -> IptablesBackend:
    for tool in (f"iptables-{flavour}-restore", f"ip6tables-{flavour}-restore", "ipset"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    return IptablesBackend(world.host, flavour)


def ipt_cmd(world: World, flavour: str, fam: int = 4) -> list[str]:
    return ["ip", "netns", "exec", world.host, f"ip{'6' if fam == 6 else ''}tables-{flavour}", "-w", "5"]


def ipset_cmd(world: World) -> list[str]:
    return ["ip", "netns", "exec", world.host, "ipset"]


# --- tests ----------------------------------------------------------------------------------------------


@BOTH
async def test_fail_closed_before_first_sync_and_default_drop(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    assert can(wls, "a", "b", "icmp")  # sanity: the wiring works without our chains
    await ipt.install_fail_closed()
    assert cannot(wls, "a", "b", "icmp") and cannot(wls, "a", "b", "icmp", v6=True)
    await setup(ipt, [endpoint(wls, n, profiles=()) for n in "abc"])  # type: ignore[arg-type]
    assert cannot(wls, "a", "b") and cannot(wls, "a", "b", v6=True) and cannot(wls, "a", "b", "udp")
    assert ipt.full_applies == 1


@BOTH
async def test_allow_by_selector_set_v4_v6(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    await setup(ipt, [  # type: ignore[arg-type]
        ev.IPSetUpdate("sel-a", ev.IPSetType.NET, frozenset({f"{V4['a']}/32", f"{V6['a']}/128"})),
        policy("allow-a", inbound=[rule(protocol="TCP", src_ip_set_ids=("sel-a",))]),
        endpoint(wls, "a"), endpoint(wls, "b", tiers=[ingress_tier("allow-a")]), endpoint(wls, "c"),
    ])
    assert can(wls, "a", "b") and can(wls, "a", "b", v6=True)
    assert cannot(wls, "c", "b") and cannot(wls, "c", "b", v6=True)
    assert cannot(wls, "a", "b", "udp")
    assert cannot(wls, "b", "a")
    names = sh(*ipset_cmd(wls), "list", "-n").stdout.split()
    assert ips.set_name("sel-a", 4) in names and ips.set_name("sel-a", 6) in names


@BOTH
async def test_deny_then_allow_in_later_tier(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    await setup(ipt, [  # type: ignore[arg-type]
        policy("deny-a", tier="t1", inbound=[rule("Deny", src_nets=(f"{V4['a']}/32",))]),
        policy("allow-all", tier="t2", inbound=[rule()]),
        endpoint(wls, "a"), endpoint(wls, "c"),
        endpoint(wls, "b", tiers=[ingress_tier("deny-a", tier="t1", default="Pass"), ingress_tier("allow-all", tier="t2")]),
    ])
    assert cannot(wls, "a", "b") and can(wls, "c", "b")
    assert can(wls, "a", "b", v6=True)  # the Deny names an IPv4 net only


@BOTH
async def test_pass_and_tier_default_action(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    await setup(ipt, [  # type: ignore[arg-type]
        ev.ProfileUpdate("never", inbound=(rule("Deny"),), outbound=()),
        policy("pass-a", tier="t1", inbound=[rule("Pass", src_nets=(f"{V4['a']}/32", f"{V6['a']}/128"))]),
        policy("allow-all", tier="t2", inbound=[rule("Log"), rule()]),
        endpoint(wls, "a"), endpoint(wls, "c"),
        endpoint(wls, "b", tiers=[ingress_tier("pass-a", tier="t1"), ingress_tier("allow-all", tier="t2")],
                 profiles=("never",)),
    ])
    assert can(wls, "a", "b") and can(wls, "a", "b", v6=True)  # Pass -> next tier allows
    assert cannot(wls, "c", "b")  # t1 applied, nothing matched -> default Deny


@BOTH
async def test_profile_fall_through(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    await setup(ipt, [  # type: ignore[arg-type]
        ev.ProfileUpdate("only-udp", inbound=(rule(protocol="UDP"),), outbound=()),
        ev.ProfileUpdate("icmp", inbound=(rule(protocol="ICMP"), rule(protocol="ICMPv6", icmp_type=128)), outbound=()),
        endpoint(wls, "a"), endpoint(wls, "b", profiles=("only-udp", "icmp")),
    ])
    assert can(wls, "a", "b", "udp") and can(wls, "a", "b", "icmp") and can(wls, "a", "b", "icmp", v6=True)
    assert cannot(wls, "a", "b", "tcp")


@BOTH
async def test_ports_ranges_not_ports_and_many_ports(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    many = (*((p, p) for p in range(9000, 9020)), (9100, 9110))  # 22 slots: split over two rules
    await setup(ipt, [  # type: ignore[arg-type]
        policy("ports", inbound=[rule(protocol="TCP", dst_ports=((8000, 8100),), not_dst_ports=((8080, 8080),))]),
        policy("many", inbound=[rule(dst_ports=many)]),  # no protocol: tcp, udp and sctp
        endpoint(wls, "a"), endpoint(wls, "b", tiers=[ingress_tier("ports", "many")]),
    ])
    assert can(wls, "a", "b", port=8050) and can(wls, "a", "b", port=8000, v6=True)
    assert cannot(wls, "a", "b", port=8080) and cannot(wls, "a", "b", port=8200)
    assert can(wls, "a", "b", port=9019) and can(wls, "a", "b", "udp", port=9105, v6=True)
    assert cannot(wls, "a", "b", port=9020)


@BOTH
async def test_nets_and_not_nets(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    await setup(ipt, [  # type: ignore[arg-type]
        policy("nets", inbound=[rule(src_nets=("198.18.1.0/24", "fd00:c411:0:1::/64"),
                                     not_src_nets=(f"{V4['a']}/32", f"{V6['a']}/128", "198.18.2.0/24"))]),
        endpoint(wls, "a"), endpoint(wls, "c"), endpoint(wls, "b", tiers=[ingress_tier("nets")]),
    ])
    assert can(wls, "c", "b") and can(wls, "c", "b", v6=True)
    assert cannot(wls, "a", "b") and cannot(wls, "a", "b", v6=True)


@BOTH
async def test_named_port_set(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    await setup(ipt, [  # type: ignore[arg-type]
        ev.IPSetUpdate("np-http", ev.IPSetType.IP_PORT,
                       frozenset({f"{V4['b']},tcp:8080", f"{V6['b']},tcp:8080", f"{V4['b']},udp:5353"})),
        policy("named", inbound=[rule(dst_named_port_set_ids=("np-http",))]),
        endpoint(wls, "a"), endpoint(wls, "b", tiers=[ingress_tier("named")]),
    ])
    assert can(wls, "a", "b", port=8080) and can(wls, "a", "b", port=8080, v6=True)
    assert can(wls, "a", "b", "udp", port=5353)
    assert cannot(wls, "a", "b", port=8081) and cannot(wls, "a", "b", "udp", port=8080)


@BOTH
async def test_unknown_workload_interface_dropped(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    allow_in = ev.ProfileUpdate("open", inbound=(rule(),), outbound=(rule(),))
    await setup(ipt, [allow_in, endpoint(wls, "a", profiles=("open",)),  # type: ignore[arg-type]
                      endpoint(wls, "b", profiles=("open",))])
    assert can(wls, "a", "b")
    assert cannot(wls, "a", "c") and cannot(wls, "c", "a") and cannot(wls, "c", "a", "icmp", v6=True)


@BOTH
async def test_endpoint_to_host(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    state = await setup(ipt, [endpoint(wls, "a")])  # type: ignore[arg-type]
    a = wls.workloads["a"]
    assert not wls.probe(a, wls.host_ipv4, "tcp", 8080, timeout=DROP_T)  # default Drop
    assert not wls.probe(a, wls.host_ipv6, "icmp", timeout=DROP_T)
    assert wls.probe(a, wls.host_ipv4, "udp", 53, timeout=1.0)  # DNS allowed first
    assert wls.probe(a, wls.host_ipv6, "tcp", 53, timeout=1.0)
    state.configure(dataclasses.replace(state.config, endpoint_to_host_action="Accept"))
    plan = await ipt.apply(state)
    assert plan.full
    assert wls.probe(a, wls.host_ipv4, "tcp", 8080, timeout=1.0)
    assert wls.probe(a, wls.host_ipv6, "icmp", timeout=1.0)


@BOTH
async def test_spoofed_source_dropped(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    open_in = ev.ProfileUpdate("open-in", inbound=(rule(),), outbound=())
    state = await setup(ipt, [open_in, endpoint(wls, "a"),  # type: ignore[arg-type]
                              endpoint(wls, "b", profiles=("open-in",))])
    spoof4, spoof6 = "198.18.1.99", "fd00:c411:0:1::99"
    a = wls.workloads["a"]
    wls.add_extra_address(a, spoof4)
    wls.add_extra_address(a, spoof6)
    assert wls.probe(a, V4["b"], "tcp", 8080, timeout=1.0)
    assert not wls.probe(a, V4["b"], "tcp", 8080, timeout=DROP_T, src_ip=spoof4)
    assert not wls.probe(a, V6["b"], "udp", 8080, timeout=DROP_T, src_ip=spoof6)
    state.apply(endpoint(wls, "a", spoof=(f"{spoof4}/32",)))
    plan = await ipt.apply(state)
    assert not plan.full
    assert wls.probe(a, V4["b"], "tcp", 8080, timeout=1.0, src_ip=spoof4)


@BOTH
async def test_incremental_set_update(wls: World, ipt: IptablesBackend) -> None:  # noqa: F811
    state = await setup(ipt, [  # type: ignore[arg-type]
        ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({f"{V4['a']}/32"})),
        policy("allow-sel", inbound=[rule(src_ip_set_ids=("sel",))]),
        endpoint(wls, "a"), endpoint(wls, "c"), endpoint(wls, "b", tiers=[ingress_tier("allow-sel")]),
    ])
    assert can(wls, "a", "b") and cannot(wls, "c", "b")
    state.apply(ev.IPSetDelta("sel", added=frozenset({f"{V4['c']}/32", f"{V6['c']}/128"}),
                              removed=frozenset({f"{V4['a']}/32"})))
    plan = await ipt.apply(state)
    assert not plan.full and not any(plan.tables.values()) and not plan.ipset_post
    assert all(line.split()[0] in ("add", "del") for line in plan.ipset_pre.splitlines()), plan.ipset_pre
    assert can(wls, "c", "b") and can(wls, "c", "b", v6=True) and cannot(wls, "a", "b")
    # A new policy and an endpoint change: one incremental transaction per family, only dirty chains.
    state.apply(policy("allow-udp", inbound=[rule(protocol="UDP")]))
    state.apply(endpoint(wls, "b", tiers=[ingress_tier("allow-sel", "allow-udp")]))
    plan = await ipt.apply(state)
    assert not plan.full and "cali-fw-" + wls.workloads["a"].iface not in plan.text
    assert can(wls, "a", "b", "udp")
    # Endpoint removed: its interface falls back to the fail-closed drop; its chains and the set go.
    state.apply(ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns1", "c")))
    state.apply(ev.IPSetRemove("sel"))
    state.apply(policy("allow-sel", inbound=[rule()]))
    plan = await ipt.apply(state)
    assert not plan.full and "-X cali-fw-" in plan.tables[4] and "destroy cali40s:" in plan.ipset_post
    assert cannot(wls, "c", "b", "udp")
    assert not await ipt.check_and_repair(state)  # the incremental result matches the model


@BOTH
async def test_tamper_is_detected_and_repaired(wls: World, ipt: IptablesBackend, flavour: str) -> None:  # noqa: F811
    state = await setup(ipt, [  # type: ignore[arg-type]
        ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({f"{V4['a']}/32"})),
        policy("allow-sel", inbound=[rule(src_ip_set_ids=("sel",))]),
        endpoint(wls, "a"), endpoint(wls, "c"), endpoint(wls, "b", tiers=[ingress_tier("allow-sel")]),
    ])
    assert not await ipt.check_and_repair(state)
    ipt4, ipt6, ipset = ipt_cmd(wls, flavour), ipt_cmd(wls, flavour, 6), ipset_cmd(wls)
    tw_b = ipt_names.tw_chain(wls.workloads["b"].iface)
    assert ipt.planner.applied is not None
    group_b = ipt.planner.applied.models[4][tw_b].rules[-1].target.split()[-1]  # b's policy group (goto)
    pi = ipt_names.policy_chain(ev.PolicyID("default", "allow-sel", "ns1"), True)
    set4 = ips.set_name("sel", 4)
    jump = ["-m", "comment", "--comment", f"cali:{ipt_model.jump_hash('FORWARD', ipt_names.FORWARD)}", "-j", ipt_names.FORWARD]
    tampering = [
        [[*ipt4, "-F", tw_b]],  # flushed chain
        [[*ipt4, "-F", group_b], [*ipt4, "-F", pi], [*ipt4, "-X", pi]],  # deleted chain
        [[*ipt4, "-D", "FORWARD", *jump]],  # removed jump
        [[*ipt6, "-F", ipt_names.FROM_WL]],  # v6 flushed dispatch
        [[*ipset, "flush", set4]],  # emptied set
        [[*ipt4, "-F", pi], [*ipset, "destroy", set4]],  # destroyed set
    ]
    for cmds in tampering:
        for cmd in cmds:
            sh(*cmd)
        assert await ipt.check_and_repair(state), cmds
        assert can(wls, "a", "b") and cannot(wls, "c", "b"), cmds
        assert not await ipt.check_and_repair(state), cmds
    assert ipt.repairs == len(tampering)


@BOTH
async def test_leaves_other_chains_rules_and_sets_alone(wls: World, ipt: IptablesBackend, flavour: str) -> None:  # noqa: F811
    ipt4, ipset = ipt_cmd(wls, flavour), ipset_cmd(wls)
    # Someone else's chain, rules in the built-in chains, and set, before and after we start.
    sh(*ipset, "create", "other-set", "hash:ip")
    sh(*ipt4, "-N", "other-chain")
    sh(*ipt4, "-A", "other-chain", "-s", "198.18.9.9", "-j", "DROP")
    sh(*ipt4, "-A", "FORWARD", "-j", "other-chain")
    sh(*ipt4, "-A", "INPUT", "-m", "set", "--match-set", "other-set", "src", "-j", "DROP")
    await ipt.install_fail_closed()
    state = await setup(ipt, [endpoint(wls, "a"), endpoint(wls, "b")])  # type: ignore[arg-type]
    state.apply(ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns1", "b")))
    await ipt.apply(state)
    sh(*ipt4, "-F", ipt_names.FORWARD)
    assert await ipt.check_and_repair(state)
    sh(*ipt4, "-A", "FORWARD", "-s", "198.18.9.8", "-j", "DROP")  # added while we run
    await ipt.apply(state)
    saved = sh("ip", "netns", "exec", wls.host, f"iptables-{flavour}-save", "-t", "filter").stdout
    assert ":other-chain" in saved and "-A other-chain -s 198.18.9.9/32 -j DROP" in saved
    assert "-A FORWARD -j other-chain" in saved and "-A FORWARD -s 198.18.9.8/32 -j DROP" in saved
    assert "--match-set other-set src -j DROP" in saved
    forward = [line for line in saved.splitlines() if line.startswith("-A FORWARD")]
    assert forward[0].endswith(f"-j {ipt_names.FORWARD}") and sum(ipt_names.FORWARD in line for line in forward) == 1
    assert "other-set" in sh(*ipset, "list", "-n").stdout.split()

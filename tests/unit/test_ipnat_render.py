"""Floating IPs (1:1 NAT), rendered: the settled NAT tables, the desired state's dirty mark, the nft maps and the
planner's map-element transactions (on FakeNft), the iptables nat chains and their plans, the workload routes to
the external addresses, and the metadata sysctl. The real packets: tests/dataplane/test_floating_ips.py."""

from __future__ import annotations

import asyncio
import dataclasses

from calico.calculation import events as ev
from calico.dataplane.config import MetadataTarget
from calico.dataplane.ipnat import NATTable, nat_tables
from calico.dataplane.iptables import nat as ipt_nat
from calico.dataplane.iptables import side as ipt_side
from calico.dataplane.iptables import text as ipt_text
from calico.dataplane.iptables.model import Rule
from calico.dataplane.iptables.plan import Planner as IptPlanner
from calico.dataplane.iptables.plan import plan_full
from calico.dataplane.netlink.commands import interface_sysctls
from calico.dataplane.netlink.plan import Link, RoutePlanner
from calico.dataplane.nftables import ops
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.fake import FakeNft
from calico.dataplane.nftables.nat import NAT_CHAIN, NAT_OUTPUT, NAT_PREROUTING
from calico.dataplane.nftables.table import render_model
from tests.helpers.network_events import ALLOW_PROFILE, pool, state, workload

EXT4, EXT6 = "198.19.250.5", "fd00:5::5"


def nat_wep(name: str, iface: str, ipv4: str, ipv6: str | None = None, *nats: tuple[str, str]
            ) -> ev.WorkloadEndpointUpdate:
    """workload() with NATs (external, internal), split by family as the graph does."""
    infos = [ev.NATInfo(e, i) for e, i in nats]
    return dataclasses.replace(workload(name, iface, ipv4, ipv6),
                               ipv4_nats=tuple(n for n in infos if ":" not in n.external_ip),
                               ipv6_nats=tuple(n for n in infos if ":" in n.external_ip))


W1 = nat_wep("w1", "cali1", "198.18.1.10", "fd00:1::10", (EXT4, "198.18.1.10"), (EXT6, "fd00:1::10"))
W2 = nat_wep("w2", "cali2", "198.18.1.20", None, ("198.19.250.6", "198.18.1.20"))


def eid(name: str) -> ev.WorkloadEndpointID:
    return ev.WorkloadEndpointID("default", name)


# --- the tables ---------------------------------------------------------------------------------------


def test_nat_tables_settle_conflicts_whatever_the_order() -> None:
    a = (ev.NATInfo(EXT4, "198.18.1.10"), ev.NATInfo("198.19.250.9", "198.18.1.10"))
    b = (ev.NATInfo(EXT4, "198.18.1.20"), ev.NATInfo("198.19.250.7", "198.18.1.20"), ev.NATInfo(EXT6, "fd00:1::2"))
    want = {
        4: NATTable({EXT4: "198.18.1.10", "198.19.250.9": "198.18.1.10", "198.19.250.7": "198.18.1.20"},
                    {"198.18.1.10": EXT4, "198.18.1.20": "198.19.250.7"}),  # each internal: its first won NAT
        6: NATTable({EXT6: "fd00:1::2"}, {"fd00:1::2": EXT6}),
    }
    assert nat_tables({eid("a"): a, eid("b"): b}) == want  # "a" < "b": a wins EXT4
    assert nat_tables({eid("b"): b, eid("a"): a}) == want
    assert nat_tables({}) == {4: NATTable(), 6: NATTable()}


def test_desired_state_marks_nats_only_when_they_change() -> None:
    s = state(ALLOW_PROFILE, W1)
    assert s.ip_nats == {eid("w1"): (*W1.ipv4_nats, *W1.ipv6_nats)}
    s.take_dirty()
    s.apply(dataclasses.replace(W1, profile_ids=()))  # the same NATs: no NAT work
    assert not s.take_dirty().nats
    s.apply(workload("w3", "cali3", "198.18.1.30"))  # an endpoint without NATs: none either
    assert not s.take_dirty().nats
    s.apply(W2)
    assert s.take_dirty().nats
    s.apply(ev.WorkloadEndpointRemove(eid("w2")))
    assert s.take_dirty().nats and eid("w2") not in s.ip_nats


# --- nftables -----------------------------------------------------------------------------------------


def test_nft_maps_and_fixed_chains() -> None:
    model = render_model(state(pool("198.18.0.0/16", nat=True), ALLOW_PROFILE, W1, W2,
                               metadata=MetadataTarget("127.0.0.1", 8775)))
    assert model.maps["fip-dnat4"] == {EXT4: "198.18.1.10", "198.19.250.6": "198.18.1.20"}
    assert model.maps["fip-snat4"] == {"198.18.1.10": EXT4, "198.18.1.20": "198.19.250.6"}
    assert model.maps["fip-hairpin4"] == {"198.18.1.10 . 198.18.1.10": EXT4,
                                          "198.18.1.20 . 198.18.1.20": "198.19.250.6"}
    assert model.maps["fip-dnat6"] == {EXT6: "fd00:1::10"} and model.maps["fip-snat6"] == {"fd00:1::10": EXT6}
    pre = model.chains[NAT_PREROUTING]
    assert pre.hook == "type nat hook prerouting priority dstnat; policy accept;"
    assert pre.rules == ('iifname "cali*" ip daddr 169.254.169.254 tcp dport 80 dnat ip to 127.0.0.1:8775',
                         "dnat ip to ip daddr map @fip-dnat4", "dnat ip6 to ip6 daddr map @fip-dnat6")
    assert model.chains[NAT_OUTPUT].rules == pre.rules[1:]  # the host's own traffic to a floating IP
    assert "hook output priority -100" in (model.chains[NAT_OUTPUT].hook or "")
    post = model.chains[NAT_CHAIN].rules
    assert post[:2] == ("snat ip to ip saddr . ip daddr map @fip-hairpin4",
                        "ip daddr != @s4-ipam/all-pools snat ip to ip saddr map @fip-snat4")
    assert post.index("ip daddr != @s4-ipam/all-pools snat ip to ip saddr map @fip-snat4") < post.index(
        "ip saddr @s4-ipam/masq-pools ip daddr != @s4-ipam/all-pools masquerade")  # ahead of natOutgoing
    empty = render_model(state())
    assert all(empty.maps[m] == {} for m in ("fip-dnat4", "fip-snat4", "fip-hairpin4", "fip-dnat6"))


def test_nft_nat_changes_are_map_elements_only() -> None:
    fake = FakeNft()
    backend = NftBackend(fake)
    s = state(pool("198.18.0.0/16", nat=True), ALLOW_PROFILE, W1)
    asyncio.run(backend.apply(s))
    s.apply(W2)  # a new endpoint with a NAT: its chains, dispatch entries and the NAT elements
    plan = asyncio.run(backend.apply(s))
    assert not plan.full
    assert ops.AddMapElements("fip-dnat4", (("198.19.250.6", "198.18.1.20"),)) in plan.ops
    assert ops.AddMapElements("fip-hairpin4", (("198.18.1.20 . 198.18.1.20", "198.19.250.6"),)) in plan.ops
    # The floating IP moves to another address of W1's; the endpoint's chains do not change.
    moved = nat_wep("w1", "cali1", "198.18.1.10", "fd00:1::10", ("198.19.250.9", "198.18.1.10"), (EXT6, "fd00:1::10"))
    s.apply(moved)
    plan = asyncio.run(backend.apply(s))
    assert set(plan.ops) == {
        ops.DeleteMapElements("fip-dnat4", (EXT4,)),
        ops.DeleteMapElements("fip-snat4", ("198.18.1.10",)),
        ops.DeleteMapElements("fip-hairpin4", ("198.18.1.10 . 198.18.1.10",)),
        ops.AddMapElements("fip-dnat4", (("198.19.250.9", "198.18.1.10"),)),
        ops.AddMapElements("fip-snat4", (("198.18.1.10", "198.19.250.9"),)),
        ops.AddMapElements("fip-hairpin4", (("198.18.1.10 . 198.18.1.10", "198.19.250.9"),)),
    }
    assert "delete element inet calico fip-hairpin4 { 198.18.1.10 . 198.18.1.10 }" in plan.text
    s.apply(ev.WorkloadEndpointRemove(eid("w1")))
    asyncio.run(backend.apply(s))
    assert fake.table is not None
    assert fake.table.maps["fip-dnat4"] == {"198.19.250.6": "198.18.1.20"} and fake.table.maps["fip-dnat6"] == {}
    assert not asyncio.run(backend.check_and_repair(s))  # read-back agrees with what was planned
    assert fake.table.as_model().maps == render_model(s).maps  # and incremental == full


def test_nft_a_taken_external_address_waits_for_its_owner_to_let_go() -> None:
    fake = FakeNft()
    backend = NftBackend(fake)
    s = state(ALLOW_PROFILE, W2)
    asyncio.run(backend.apply(s))
    thief = nat_wep("w3", "cali3", "198.18.1.30", None, ("198.19.250.6", "198.18.1.30"))
    s.apply(thief)  # "w2" < "w3": w2 keeps it, and nft is never asked for a duplicate key
    asyncio.run(backend.apply(s))
    assert fake.table is not None and fake.table.maps["fip-dnat4"] == {"198.19.250.6": "198.18.1.20"}
    s.apply(ev.WorkloadEndpointRemove(eid("w2")))
    asyncio.run(backend.apply(s))
    assert fake.table.maps["fip-dnat4"] == {"198.19.250.6": "198.18.1.30"}
    assert fake.table.maps["fip-snat4"] == {"198.18.1.30": "198.19.250.6"}


# --- iptables -----------------------------------------------------------------------------------------


def test_iptables_fip_chains_by_calicos_names() -> None:
    s = state(pool("198.18.0.0/16", nat=True), ALLOW_PROFILE, W1, W2, metadata=MetadataTarget("127.0.0.1", 8775))
    tables = nat_tables(s.ip_nats)
    v4 = {c.name: c for c in ipt_nat.nat_chains(s.config, 4, tables[4])}
    assert v4["cali-PREROUTING"].rules[0] == Rule("", "-j cali-fip-dnat")
    assert "169.254.169.254" in v4["cali-PREROUTING"].rules[1].match
    assert v4["cali-OUTPUT"].rules == (Rule("", "-j cali-fip-dnat"),)
    assert v4["cali-POSTROUTING"].rules == (Rule("", "-j cali-fip-snat"), Rule("", "-j cali-nat-outgoing"))
    assert v4["cali-fip-dnat"].rules == (Rule(f"-d {EXT4}/32", "-j DNAT --to-destination 198.18.1.10"),
                                         Rule("-d 198.19.250.6/32", "-j DNAT --to-destination 198.18.1.20"))
    assert v4["cali-fip-snat"].rules[:2] == (
        Rule("-s 198.18.1.10/32 -d 198.18.1.10/32", f"-j SNAT --to-source {EXT4}"),
        Rule("-s 198.18.1.10/32 -m set ! --match-set cali40all-ipam-pools dst", f"-j SNAT --to-source {EXT4}"))
    v6 = {c.name: c for c in ipt_nat.nat_chains(s.config, 6, tables[6])}
    assert v6["cali-fip-dnat"].rules == (Rule(f"-d {EXT6}/128", "-j DNAT --to-destination fd00:1::10"),)
    assert "cali60all-ipam-pools" in v6["cali-fip-snat"].rules[1].match
    assert len(v6["cali-PREROUTING"].rules) == 1  # the metadata DNAT is IPv4 only
    text = ipt_side.side_restore_text("nat", list(v4.values()), ipt_side.SavedSide())
    assert "-I OUTPUT 1 " in text and f"-A cali-fip-dnat -d {EXT4}/32 " in text
    # Without NATs the chains are empty, and still there for the fixed jumps.
    bare = {c.name: c for c in ipt_nat.nat_chains(state().config, 4)}
    assert bare["cali-fip-dnat"].rules == bare["cali-fip-snat"].rules == ()


def test_iptables_nat_change_leaves_the_filter_table_alone() -> None:
    s = state(pool("198.18.0.0/16", nat=True), ALLOW_PROFILE, W1)
    planner = IptPlanner()
    planner.commit(plan_full(s, {f: ipt_text.SavedTable() for f in (4, 6)}, set()))
    s.take_dirty()
    s.apply(nat_wep("w1", "cali1", "198.18.1.10", "fd00:1::10"))  # NATs dropped, nothing else
    dirty = s.take_dirty()
    assert dirty.nats  # the backend rewrites the nat table (`side`) for this...
    plan = planner.plan_incremental(s, dirty)
    assert plan.text == ""  # ...and nothing in filter or the ipsets


# --- routes and sysctls -------------------------------------------------------------------------------


def test_external_addresses_are_routed_to_the_workload_and_flushed_when_they_go() -> None:
    p = RoutePlanner()
    p.set_links([Link("cali1", 7, True)])
    p.set_endpoint(W1)
    plan = p.plan()
    p.applied(plan)
    assert plan.add == {"198.18.1.10/32": 7, "fd00:1::10/128": 7, f"{EXT4}/32": 7, f"{EXT6}/128": 7}
    p.set_endpoint(nat_wep("w1", "cali1", "198.18.1.10", "fd00:1::10", (EXT6, "fd00:1::10")))
    plan = p.plan()
    assert plan.delete == {f"{EXT4}/32": 7} and not plan.add
    assert plan.flush_conntrack == {EXT4}  # flows through the floating IP must not outlive it


def test_route_localnet_only_when_asked() -> None:
    assert "net.ipv4.conf.tap1.route_localnet=0" in interface_sysctls("tap1")
    assert "net.ipv4.conf.tap1.route_localnet=1" in interface_sysctls("tap1", route_localnet=True)
    assert MetadataTarget("127.0.0.1", 8775).loopback and not MetadataTarget("198.18.0.1", 8775).loopback

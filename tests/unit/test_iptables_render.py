"""Pure tests of the iptables renderer, ipset naming/text and the planner (no processes, no namespaces)."""

from __future__ import annotations

import re

from calico.calculation import events as ev
from calico.dataplane.iptables import endpoints as ipt_endpoints
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables import model as ipt_model
from calico.dataplane.iptables import names as ipt_names
from calico.dataplane.iptables import rules as ipt_rules
from calico.dataplane.iptables import table as ipt_table
from calico.dataplane.iptables import text as ipt_text
from calico.dataplane.iptables.plan import Planner, plan_full
from calico.dataplane.state import DesiredState


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id="x", **kw)  # type: ignore[arg-type]


def lines(rule_: ev.RenderedRule, fam: int = 4, profile: bool = False) -> list[str]:
    out, _ = ipt_rules.render_rule(rule_, fam, "cali-pi-x", profile)
    return [f"{x.match} {x.target}".strip() for x in out]


PID = ev.PolicyID("default", "p1", "ns1")
EID = ev.WorkloadEndpointID("ns1", "a")


def endpoint(iface: str = "cali0123456789a", tiers=(), profiles=()) -> ev.WorkloadEndpointUpdate:
    return ev.WorkloadEndpointUpdate(EID, iface, None, ("198.18.1.2/32",), ("fd00::2/128",), tuple(tiers),
                                     tuple(profiles))


def state_with(*events: object) -> DesiredState:
    s = DesiredState()
    s.apply_all([*events, ev.InSync()])  # type: ignore[list-item]
    return s


# --- names ----------------------------------------------------------------------------------------------


def test_chain_names_fit_and_hash_when_long() -> None:
    assert ipt_names.policy_chain(PID, True) == "cali-pi-default/ns1/p1"
    long = ev.PolicyID("tier-with-a-long-name", "policy-with-an-even-longer-name", "namespace")
    for inbound in (True, False):
        name = ipt_names.policy_chain(long, inbound)
        assert len(name) <= ipt_names.MAX_CHAIN and name.startswith(("cali-pi-_", "cali-po-_"))
    assert ipt_names.policy_chain(long, True) != ipt_names.policy_chain(ev.PolicyID("tier-with-a-long-name", "other", "ns"), True)
    assert len(ipt_names.profile_chain("kns.a-very-long-namespace-name-indeed", False)) <= ipt_names.MAX_CHAIN
    assert ipt_names.profile_chain("_x", True).startswith("cali-pri-_") and ipt_names.profile_chain("_x", True) != "cali-pri-_x"
    assert ipt_names.fw_chain("cali0123456789a") == "cali-fw-cali0123456789a"


def test_ipset_names() -> None:
    n4, n6, np4 = ips.set_name("s:abc", 4), ips.set_name("s:abc", 6), ips.set_name("s:abc", 4, True)
    assert re.fullmatch(r"cali40s:[A-Za-z0-9_\-]{22}", n4) and len(n4) <= 31
    assert n6.startswith("cali60s:") and np4.startswith("cali40n:") and n4[8:] == n6[8:]
    assert ips.temp_name(n4).startswith("cali4ts:") and len(ips.temp_name(n4)) == len(n4)
    assert ips.is_ours(n4) and not ips.is_ours("other-set")


def test_ipset_members_split_by_family_and_canonical() -> None:
    s = state_with(ev.IPSetUpdate("x", ev.IPSetType.NET, frozenset({"198.18.1.2/32", "198.18.1.0/24", "fd00::1/128",
                                                                     "0.0.0.0/0", "junk"})))
    v4, v6 = ips.specs_for("x", s.ipsets["x"])
    assert v4.members == {"0.0.0.0/1", "128.0.0.0/1", "198.18.1.2", "198.18.1.0/24"}  # hash:net has no /0
    assert v6.members == {"fd00::1"} and v6.kind == "hash:net" and v6.family == 6
    s2 = state_with(ev.IPSetUpdate("n", ev.IPSetType.IP_PORT, frozenset({"198.18.0.1,TCP:80", "fd00::1,udp:53",
                                                                       "198.18.0.1,icmp:1"})))
    n4, n6 = ips.specs_for("n", s2.ipsets["n"])
    assert n4.members == {"198.18.0.1,tcp:80"} and n6.members == {"fd00::1,udp:53"} and n4.kind == "hash:ip,port"


def test_ipset_replace_uses_temp_and_swap_and_deltas_are_small() -> None:
    spec = ips.IpsetSpec(ips.set_name("x", 4), "hash:net", 4, frozenset({"198.18.0.0/24"}))
    text = ips.replace_lines(spec)
    assert text[0].startswith(f"create {spec.temp_name} hash:net family inet maxelem")
    assert f"swap {spec.temp_name} {spec.name}" in text and text[-1] == f"destroy {spec.temp_name}"
    bigger = ips.IpsetSpec(spec.name, spec.kind, 4, spec.members | {"198.18.1.1"})
    assert ips.delta_lines(spec, bigger) == [f"add {spec.name} 198.18.1.1"]
    many = ips.IpsetSpec(spec.name, spec.kind, 4, frozenset(f"198.18.2.{i}" for i in range(100)))
    assert any(line.startswith("swap") for line in ips.delta_lines(spec, many))


def test_parse_ipset_list_terse() -> None:
    text = "Name: cali40s:abc\nType: hash:net\nNumber of entries: 3\nMembers:\n\nName: other\nNumber of entries: 1\n"
    assert ips.parse_list_terse(text) == {"cali40s:abc": 3}


# --- rules ----------------------------------------------------------------------------------------------


def test_allow_marks_then_returns_and_deny_log_pass() -> None:
    assert lines(rule(protocol="TCP")) == ["-p tcp -j MARK --set-xmark 0x10000/0x10000",
                                           "-m mark --mark 0x10000/0x10000 -j RETURN"]
    assert lines(rule("Deny")) == ["-j DROP"]
    assert lines(rule("Log"))[0].startswith('-j LOG --log-prefix "calico-pi-x ')
    assert lines(rule("Pass"))[0] == "-j MARK --set-xmark 0x20000/0x20000"
    assert lines(rule("Pass"), profile=True) == ["-j RETURN"]


def test_family_selection() -> None:
    assert lines(rule("Deny", src_nets=("198.18.0.0/16",)), 6) == []
    assert lines(rule("Deny", protocol="ICMP"), 6) == []
    assert lines(rule("Deny", protocol="ICMPv6", icmp_type=128), 6) == ["-p ipv6-icmp -m icmp6 --icmpv6-type 128 -j DROP"]
    assert lines(rule("Deny", protocol="ICMP", icmp_type=8, icmp_code=0)) == ["-p icmp -m icmp --icmp-type 8/0 -j DROP"]
    assert lines(rule("Deny", ip_version=6), 4) == []
    assert lines(rule("Deny", protocol="TCP", not_protocol="TCP")) == []
    assert lines(rule("Deny", not_protocol="UDP")) == ["! -p udp -j DROP"]


def test_nets_or_and_not_nets_and() -> None:
    out = lines(rule("Deny", src_nets=("198.18.1.0/24", "198.18.3.0/24", "fd00::/64"),
                     not_src_nets=("198.18.1.1/32", "198.18.1.2/32")))
    assert len(out) == 2 and "-s 198.18.1.0/24" in out[0] and "-s 198.18.3.0/24" in out[1]
    assert all(o.count("-m iprange ! --src-range") == 2 for o in out)
    assert "198.18.1.1-198.18.1.1" in out[0]


def test_ports_split_at_15_slots_and_need_a_protocol() -> None:
    ports = tuple((p, p) for p in range(1000, 1020))
    out = lines(rule("Deny", protocol="TCP", dst_ports=ports))
    assert len(out) == 2
    for o in out:
        arg = o.split("--dports ")[1].split()[0]
        assert len(arg.split(",")) <= 15
    # No protocol: one variant per port protocol.
    out = lines(rule("Deny", dst_ports=((80, 80),), not_src_ports=((1, 1023),)))
    assert [o.split()[1] for o in out] == ["tcp", "udp", "sctp"]
    assert all("-m multiport ! --sports 1:1023" in o for o in out)
    chunks = ipt_rules.port_chunks([(1, 2)] * 1 + [(p, p) for p in range(10, 24)])
    assert chunks == ["1:2," + ",".join(str(p) for p in range(10, 23)), "23"]  # a range takes two slots


def test_sets_and_named_ports() -> None:
    out, refs = ipt_rules.render_rule(rule(src_ip_set_ids=("s1",), not_dst_ip_set_ids=("s2",),
                                   dst_ports=((80, 80),), dst_named_port_set_ids=("np",), protocol="TCP"),
                              6, "cali-pi-x")
    assert refs == {ips.set_name("s1", 6), ips.set_name("s2", 6), ips.set_name("np", 6, True)}
    text = [x.match for x in out[:-1]]
    assert len(text) == 2  # numeric ports OR named ports
    assert f"-m set --match-set {ips.set_name('s1', 6)} src" in text[0]
    assert f"-m set ! --match-set {ips.set_name('s2', 6)} dst" in text[0]
    assert text[1].endswith(f"-m set --match-set {ips.set_name('np', 6, True)} dst,dst")


def test_unrenderable_rule_fails_closed() -> None:
    pol = ev.PolicyUpdate(PID, (rule("Allow", protocol="bogus"), rule()), ())
    chain = ipt_rules.policy_chains(pol, 4)[0]
    assert chain.rules == (ipt_model.Rule("", "-j DROP", "BID//0/default/ns1/p1"),)


# --- endpoints and base chains -----------------------------------------------------------------------------


def test_endpoint_chain_tiers_profiles_and_anti_spoof() -> None:
    tier = ev.TierInfo("default", "Deny", ingress_policies=(PID, ev.PolicyID("default", "missing", "ns1")))
    fw, tw, out_group, in_group = ipt_endpoints.endpoint_chains(
        endpoint(tiers=[tier], profiles=["prof"]), 4, {PID: object()}, {"prof": object()})
    fw_text = [f"{x.match} {x.target}".strip() for x in fw.rules]
    assert fw_text == ["-j MARK --set-xmark 0x0/0x30000", "! -s 198.18.1.2 -j DROP", f"-g {out_group.name}"]
    assert fw.rules[1].counter == "SED/w"  # anti-spoofing
    assert [f"{x.match} {x.target}".strip() for x in tw.rules] == [
        "-j MARK --set-xmark 0x0/0x30000", f"-g {in_group.name}"]
    assert in_group.name.startswith("cali-pgi-") and len(in_group.name) <= ipt_names.MAX_CHAIN
    # Endpoints with the same policies share their groups; other policies, other groups.
    again = ipt_endpoints.endpoint_chains(endpoint(tiers=[tier], profiles=["prof"]), 4, {PID: object()}, {"prof": object()})
    assert again[3].name == in_group.name
    assert ipt_endpoints.endpoint_chains(endpoint(), 4, {}, {})[3].name != in_group.name
    tw_text = [f"{x.match} {x.target}".strip() for x in in_group.rules]
    assert tw_text == [
        "-m mark --mark 0x0/0x20000 -j cali-pi-default/ns1/p1",
        "-m mark --mark 0x10000/0x10000 -j RETURN",
        "-m mark --mark 0x0/0x20000 -j DROP",  # missing policy: fail closed
        "-m mark --mark 0x0/0x20000 -j DROP",  # tier default Deny
        "-j cali-pri-prof",
        "-m mark --mark 0x10000/0x10000 -j RETURN",
        "-j DROP",
    ]
    assert [x.counter for x in in_group.rules] == [
        None, None, "MID/w//default/ns1/missing", "TID/w//default", None, None, "NID/w"]
    ep6 = ev.WorkloadEndpointUpdate(EID, "cali1", None, ("198.18.1.2/32",), (), (), ())
    assert ipt_endpoints.endpoint_chains(ep6, 6, {}, {})[0].rules[1] == ipt_model.Rule("", "-j DROP", "SED/w")


def test_dispatch_and_base_chains() -> None:
    chains = {c.name: c for c in ipt_endpoints.dispatch_chains(["calib1", "calia1", "calia2", "tap7", "cali"], ("cali", "tap"))}
    fw, tw = chains[ipt_names.FROM_WL], chains[ipt_names.TO_WL]
    # Top level: exact match for a bare-prefix name, one bucket per character after the prefix, then drop.
    assert [(x.match, x.target) for x in fw.rules] == [
        ("-i cali", "-g cali-fw-cali"), ("-i calia+", "-g cali-fwd-calia"), ("-i calib+", "-g cali-fwd-calib"),
        ("-i tap7+", "-g cali-fwd-tap7"), ("-i cali+", "-j DROP"), ("-i tap+", "-j DROP")]
    assert [x.counter for x in fw.rules] == [None] * 4 + ["UED/w"] * 2  # fail closed: unknown interface
    assert [(x.match, x.target, x.counter) for x in chains["cali-fwd-calia"].rules] == [
        ("-i calia1", "-g cali-fw-calia1", None), ("-i calia2", "-g cali-fw-calia2", None), ("", "-j DROP", "UED/w")]
    assert tw.rules[-1] == ipt_model.Rule("-o tap+", "-j DROP", "UID/w") and "cali-twd-calib" in chains
    chains = {c.name: c for c in ipt_table.base_chains(6, ("cali",), "Accept")}
    to_host = [f"{x.match} {x.target}" for x in chains[ipt_names.WL_TO_HOST].rules]
    assert any("--dport 53" in t and "udp" in t for t in to_host) and to_host[-1].endswith("-j ACCEPT")
    assert any("--icmpv6-type 135" in t for t in to_host)
    assert chains[ipt_names.FORWARD].rules[-1] == ipt_model.Rule("-m mark --mark 0x10000/0x10000", "-j ACCEPT")


def test_restore_text_declares_writes_and_deletes_last() -> None:
    chain = ipt_model.Chain("cali-x", (ipt_model.Rule("-p tcp", "-j DROP"),))
    text = ipt_text.restore_text([chain], ["cali-old"], [("FORWARD", ipt_names.FORWARD)])
    lines_ = text.splitlines()
    assert lines_[0] == "*filter" and lines_[-1] == "COMMIT" and lines_[-2] == "-X cali-old"
    assert ":cali-x - [0:0]" in lines_ and ":cali-old - [0:0]" in lines_
    assert lines_[3].startswith("-I FORWARD 1 -m comment")
    assert f'-A cali-x -p tcp -m comment --comment "cali:{chain.hashes[0]}" -j DROP' in lines_
    assert ipt_text.restore_text([], []) == ""


def test_rule_hashes_chain_over_position() -> None:
    a, b = ipt_model.Rule("", "-j DROP"), ipt_model.Rule("-p tcp", "-j ACCEPT")
    assert ipt_model.Chain("c", (a, b)).hashes != ipt_model.Chain("c", (b, a)).hashes[::-1]
    assert ipt_model.Chain("c", (a,)).hashes != ipt_model.Chain("d", (a,)).hashes
    assert len(set(ipt_model.Chain("c", (a, a)).hashes)) == 2


def test_parse_save_roundtrip() -> None:
    chain = ipt_model.Chain("cali-x", (ipt_model.Rule("-p tcp", "-j DROP"), ipt_model.Rule("", "-j RETURN")))
    text = ipt_text.restore_text([chain], [], [("FORWARD", ipt_names.FORWARD)]).replace("-I FORWARD 1", "-A FORWARD")
    text = text.replace("*filter", "*filter\n:FORWARD ACCEPT [0:0]\n:other - [0:0]\n-A other -j ACCEPT")
    saved = ipt_text.parse_save(text)
    assert saved.chains == {"cali-x": chain.hashes} and saved.jumps == {("FORWARD", ipt_names.FORWARD)}


# --- planner ----------------------------------------------------------------------------------------------


def _empty_kernel() -> dict[int, ipt_text.SavedTable]:
    return {4: ipt_text.SavedTable(), 6: ipt_text.SavedTable()}


def test_full_plan_inserts_jumps_and_removes_stale() -> None:
    s = state_with(ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({"198.18.1.2/32"})),
                   ev.PolicyUpdate(PID, (rule(src_ip_set_ids=("sel", "late")),), ()),
                   endpoint(tiers=[ev.TierInfo("default", "Deny", ingress_policies=(PID,))]))
    kernel = _empty_kernel()
    kernel[4] = ipt_text.SavedTable({"cali-stale": ("h",), ipt_names.FORWARD: ()}, {("FORWARD", ipt_names.FORWARD)})
    plan = plan_full(s, kernel, {"cali40s:stale", "other"})
    assert "-X cali-stale" in plan.tables[4] and "-I FORWARD 1" not in plan.tables[4]
    assert "-I INPUT 1" in plan.tables[4] and "-I FORWARD 1" in plan.tables[6]
    assert plan.ipset_post == "destroy cali40s:stale\n"
    assert ips.set_name("late", 4) in plan.sets and not plan.sets[ips.set_name("late", 4)].members


def test_incremental_plans_touch_only_dirty() -> None:
    s = state_with(ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({"198.18.1.2/32"})),
                   ev.PolicyUpdate(PID, (rule(src_ip_set_ids=("sel",)),), ()),
                   endpoint(tiers=[ev.TierInfo("default", "Deny", ingress_policies=(PID,))]))
    s.take_dirty()
    planner = Planner()
    planner.commit(plan_full(s, _empty_kernel(), set()))
    # Set delta: ipset lines only.
    s.apply(ev.IPSetDelta("sel", frozenset({"198.18.1.3/32"}), frozenset()))
    plan = planner.plan_incremental(s, s.take_dirty())
    assert not any(plan.tables.values()) and plan.ipset_pre == f"add {ips.set_name('sel', 4)} 198.18.1.3\n"
    planner.commit(plan)
    # Nothing dirty: nothing to do.
    plan = planner.plan_incremental(s, s.take_dirty())
    assert plan.text == ""
    # Policy stops using the set and the set goes: chain rewritten, set destroyed after.
    s.apply(ev.PolicyUpdate(PID, (rule(),), ()))
    s.apply(ev.IPSetRemove("sel"))
    plan = planner.plan_incremental(s, s.take_dirty())
    assert ":cali-pi-default/ns1/p1 - [0:0]" in plan.tables[4] and "cali-fw-" not in plan.tables[4]
    assert plan.ipset_post.split() == ["destroy", ips.set_name("sel", 4), "destroy", ips.set_name("sel", 6)]
    planner.commit(plan)
    # Endpoint renamed: old chains deleted, dispatch rewritten.
    s.apply(endpoint(iface="calinew"))
    plan = planner.plan_incremental(s, s.take_dirty())
    assert "-X cali-fw-cali0123456789a" in plan.tables[4] and "-g cali-fw-calinew" in plan.tables[6]
    # Policy removed while still referenced by nothing: its chains go.
    planner.commit(plan)
    s.apply(ev.PolicyRemove(PID))
    plan = planner.plan_incremental(s, s.take_dirty())
    assert "-X cali-pi-default/ns1/p1" in plan.tables[4]


def test_set_removed_while_still_referenced_is_emptied_not_destroyed() -> None:
    s = state_with(ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({"198.18.1.2/32"})),
                   ev.PolicyUpdate(PID, (rule(src_ip_set_ids=("sel",)),), ()))
    s.take_dirty()
    planner = Planner()
    planner.commit(plan_full(s, _empty_kernel(), set()))
    s.apply(ev.IPSetRemove("sel"))
    plan = planner.plan_incremental(s, s.take_dirty())
    assert not plan.ipset_post and f"swap {ips.temp_name(ips.set_name('sel', 4))}" in plan.ipset_pre
    assert not plan.sets[ips.set_name("sel", 4)].members


def test_policy_group_is_shared_and_removed_with_its_last_user() -> None:
    tier = ev.TierInfo("default", "Deny", ingress_policies=(PID,))
    twin = ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns1", "twin"), "calitwin", None, ("198.18.1.9/32",),
                                     (), (tier,), ())
    s = state_with(ev.PolicyUpdate(PID, (rule(),), ()), endpoint(tiers=[tier]), twin)
    s.take_dirty()
    planner = Planner()
    full = plan_full(s, _empty_kernel(), set())
    planner.commit(full)
    group = ipt_endpoints.endpoint_chains(twin, 4, s.policies, s.profiles)[3].name
    assert group in full.models[4] and full.tables[4].count(f":{group} ") == 1  # one chain for both endpoints
    s.apply(ev.WorkloadEndpointRemove(EID))
    plan = planner.plan_incremental(s, s.take_dirty())
    planner.commit(plan)
    assert f"-X {group}" not in plan.tables[4] and "-X cali-tw-cali0123456789a" in plan.tables[4]
    s.apply(ev.WorkloadEndpointRemove(twin.endpoint_id))
    plan = planner.plan_incremental(s, s.take_dirty())
    assert f"-X {group}" in plan.tables[4] and f"-X {group}" in plan.tables[6]
    assert group not in plan.models[4]



def test_dispatch_bucket_goes_with_its_last_interface() -> None:
    s = state_with(endpoint(iface="calia1"))
    s.take_dirty()
    planner = Planner()
    planner.commit(plan_full(s, _empty_kernel(), set()))
    s.apply(endpoint(iface="calib1"))  # same endpoint, new interface: bucket "calia" empties, "calib" appears
    plan = planner.plan_incremental(s, s.take_dirty())
    assert "-X cali-fwd-calia" in plan.tables[4] and ":cali-fwd-calib - [0:0]" in plan.tables[4]
    assert "-X cali-twd-calia" in plan.tables[6]
    planner.commit(plan)
    assert "cali-fwd-calia" not in plan.models[4] and "cali-fwd-calib" in plan.models[4]

"""Unit tests for the pure nftables renderer, the transaction planner and DesiredState.

The last tests also feed rendered text to `nft -c -f -` (check only) inside a scratch network namespace,
when run as root with nft installed; otherwise that part is skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.nftables import endpoints as nft_endpoints
from calico.dataplane.nftables import names as nft_names
from calico.dataplane.nftables import rules as nft_rules
from calico.dataplane.nftables import table as nft_table
from calico.dataplane.nftables import text as nft_text
from calico.dataplane.nftables.diff import Planner
from calico.dataplane.state import DesiredState


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id="r1", **kw)  # type: ignore[arg-type]


PID = ev.PolicyID("default", "web", "ns1")
GPID = ev.PolicyID("security", "deny-bad")


def ep(name: str = "a", iface: str = "cali0123456789a", tiers=(), profiles=()) -> ev.WorkloadEndpointUpdate:
    return ev.WorkloadEndpointUpdate(
        ev.WorkloadEndpointID("ns1", name), iface, None, ("198.18.1.2/32",), ("fd00:c411::2/128",),
        tuple(tiers), tuple(profiles),
    )


def full_state() -> DesiredState:
    s = DesiredState()
    s.apply_all([
        ev.IPSetUpdate("set1", ev.IPSetType.NET, frozenset({"198.18.1.0/24", "198.18.1.7/32", "fd00:c411::/64"})),
        ev.IPSetUpdate("np1", ev.IPSetType.IP_PORT, frozenset({"198.18.1.2,tcp:80", "fd00:c411::2,udp:53", "bad"})),
        ev.PolicyUpdate(PID, inbound=(
            rule(protocol="TCP", src_ip_set_ids=("set1",), dst_ports=((80, 80), (8000, 8100))),
            rule("Deny", protocol="ICMP", icmp_type=8, icmp_code=0),
            rule(not_protocol="UDP", not_dst_ports=((1, 1023),), dst_named_port_set_ids=("np1",)),
            rule("Log", not_src_ip_set_ids=("set1",)),
            rule("Pass", src_nets=("198.18.0.0/16", "fd00::/8"), not_src_nets=("198.18.9.0/24",)),
        ), outbound=(rule(protocol="ICMPv6", not_icmp_type=128, not_icmp_code=0), rule(ip_version=6))),
        ev.PolicyUpdate(GPID, inbound=(rule("Deny", src_nets=("198.18.66.0/24",)),), outbound=()),
        ev.ProfileUpdate("kns.ns1", inbound=(rule(),), outbound=(rule("Pass"),)),
        ep("a", tiers=[ev.TierInfo("security", "Pass", (GPID,)), ev.TierInfo("default", "Deny", (PID,), (PID,))],
           profiles=["kns.ns1"]),
        ep("b", "cali0123456789b"),
    ])
    return s


def test_empty_model_fails_closed() -> None:
    text = nft_text.render_replace(nft_table.empty_model())
    assert text.startswith("add table inet calico\ndelete table inet calico\ntable inet calico {")
    assert f'iifname vmap @fw-dispatch comment "{nft_names.rule_tag("iifname vmap @fw-dispatch")}"\n\t\t' \
           'counter name "UED/w" drop' in text
    assert "\tcounter UED/w { packets 0 bytes 0; }\n" in text  # declared before the rules counting into it
    # A replacement starts its counters where the replaced table's were.
    assert "counter UID/w { packets 7 bytes 700; }" in nft_text.render_replace(nft_table.empty_model(),
                                                                                {"UID/w": (7, 700)})
    assert 'iifname "cali*" jump from-wl-dispatch' in text
    assert "type filter hook forward priority filter; policy accept;" in text


def test_render_is_deterministic_and_hash_changes_with_content() -> None:
    a, b = nft_table.render_model(full_state()), nft_table.render_model(full_state())
    assert nft_text.render_text(a) == nft_text.render_text(b) and a == b
    s = full_state()
    s.apply(ev.IPSetDelta("set1", frozenset({"198.18.3.3/32"}), frozenset()))
    assert nft_text.render_text(nft_table.render_model(s)) != nft_text.render_text(a)


def test_sets_split_per_family_collapsed_and_named_ports() -> None:
    m = nft_table.render_model(full_state())
    assert m.sets["s4-set1"].elements == {"198.18.1.0/24"}  # /32 inside the /24 collapsed away
    assert m.sets["s6-set1"].elements == {"fd00:c411::/64"}
    assert m.sets["s4-set1"].interval and not m.sets["n4-np1"].interval
    assert m.sets["n4-np1"].elements == {"198.18.1.2 . tcp . 80"}
    assert m.sets["n6-np1"].elements == {"fd00:c411::2 . udp . 53"}


def test_rule_matches() -> None:
    lines, refs = nft_rules.render_rule(rule(protocol="TCP", src_ip_set_ids=("set1",), dst_ports=((80, 80), (8000, 8100))),
                                "pi-x")
    assert lines == [
        "meta nfproto ipv4 meta l4proto tcp ip saddr @s4-set1 th dport { 80, 8000-8100 } "
        "meta mark set meta mark | 0x00010000 return",
        "meta nfproto ipv6 meta l4proto tcp ip6 saddr @s6-set1 th dport { 80, 8000-8100 } "
        "meta mark set meta mark | 0x00010000 return",
    ]
    assert refs == {"s4-set1", "s6-set1"}
    # Family-agnostic rule: one line; Deny drops.
    assert nft_rules.render_rule(rule("Deny", protocol="UDP"), "c")[0] == ["meta l4proto udp drop"]
    # ICMP implies IPv4; code follows type.
    assert nft_rules.render_rule(rule(protocol="ICMP", icmp_type=8, icmp_code=0), "c")[0] == [
        "meta nfproto ipv4 meta l4proto icmp icmp type 8 icmp code 0 meta mark set meta mark | 0x00010000 return"
    ]
    # Nets of one family restrict the rule to it; notNets of that family only.
    lines, _ = nft_rules.render_rule(rule("Deny", src_nets=("198.18.0.0/16",), not_src_nets=("198.18.9.1", "fd00::/8")), "c")
    assert lines == ["meta nfproto ipv4 ip saddr { 198.18.0.0/16 } ip saddr != { 198.18.9.1 } drop"]
    # Numeric and named ports are OR'ed: one line per alternative; ports without protocol get tcp/udp/sctp.
    lines, refs = nft_rules.render_rule(rule(dst_ports=((80, 80),), dst_named_port_set_ids=("np1",), ip_version=4), "c")
    assert len(lines) == 2 and "th dport { 80 }" in lines[0] and "th dport @n4-np1" in lines[1]
    assert all("meta l4proto { tcp, udp, sctp }" in ln for ln in lines) and refs == {"n4-np1"}
    # Pass in a policy sets the pass bit; in a profile it is "no match".
    assert nft_rules.render_rule(rule("Pass"), "c")[0] == ["meta mark set meta mark | 0x00020000 return"]
    assert nft_rules.render_rule(rule("Pass"), "c", profile=True)[0] == ["return"]
    assert nft_rules.render_rule(rule("Log"), "pi-x")[0] == ['log prefix "calico-pi-x "']


def test_unrenderable_rule_fails_closed() -> None:
    chain = nft_rules.policy_chains(ev.PolicyUpdate(PID, inbound=(rule(protocol="nonsense"), rule()), outbound=()))[0]
    assert chain.rules == ('counter name "BID//0/default/ns1/web" drop',)  # rules after the bad one are not rendered


def test_endpoint_chain_structure() -> None:
    s = full_state()
    fw, tw, g_out, g_in = nft_endpoints.endpoint_chains(s.endpoints[ev.WorkloadEndpointID("ns1", "a")], s.policies, s.profiles)
    assert fw.name == "fw-cali0123456789a" and tw.name == "tw-cali0123456789a"
    assert fw.rules[1] == 'meta nfproto ipv4 ip saddr != { 198.18.1.2 } counter name "SED/w" drop'
    assert fw.rules[2] == 'meta nfproto ipv6 ip6 saddr != { fd00:c411::2 } counter name "SED/w" drop'
    assert fw.rules[-1] == f"goto {g_out.name}" and tw.rules == ("meta mark set meta mark & 0xfffcffff", f"goto {g_in.name}")
    # The policy group is shared by content: another endpoint with the same policies names the same chains.
    a = s.endpoints[ev.WorkloadEndpointID("ns1", "a")]
    other = nft_endpoints.endpoint_chains(ep("z", "cali000000000zz", a.tiers, a.profile_ids), s.policies, s.profiles)
    assert (other[2].name, other[3].name) == (g_out.name, g_in.name)
    # Ingress: security tier (default Pass: no drop), default tier (default Deny), profile, final drop.
    assert g_in.rules == (
        "meta mark & 0x00020000 == 0 jump pi-security/deny-bad",
        "meta mark & 0x00010000 != 0 return",
        "meta mark set meta mark & 0xfffcffff",
        "meta mark & 0x00020000 == 0 jump pi-default/ns1/web",
        "meta mark & 0x00010000 != 0 return",
        'meta mark & 0x00020000 == 0 counter name "TID/w//default" drop',
        "jump pri-kns.ns1",
        "meta mark & 0x00010000 != 0 return",
        'counter name "NID/w" drop',
    )
    # Unknown policy: fail closed.
    _, _, _, g_in2 = nft_endpoints.endpoint_chains(ep(tiers=[ev.TierInfo("default", "Deny", (GPID,))]), {}, {})
    assert 'meta mark & 0x00020000 == 0 counter name "MID/w//security//deny-bad" drop' in g_in2.rules
    assert "jump" not in " ".join(g_in2.rules)


def test_unsafe_names_are_hashed() -> None:
    name = nft_names.policy_chain(ev.PolicyID("default", "we ird\"name", "ns1"), True)
    assert name.startswith("pi-h") and " " not in name and '"' not in name
    assert nft_names.set_name("x" * 300, 4).startswith("s4-h")


def test_state_dirty_tracking() -> None:
    s = DesiredState()
    s.apply(ev.IPSetUpdate("x", ev.IPSetType.NET, frozenset({"198.18.0.1/32"})))
    s.apply(ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns", "w"), "cali1", None, (), (),
                                      (ev.TierInfo("default", "Deny", (PID,)),), ()))
    d = s.take_dirty()
    assert d.ipsets == {"x"} and d.endpoints == {ev.WorkloadEndpointID("ns", "w")} and not s.dirty
    # A policy arriving after an endpoint that named it re-dirties that endpoint.
    s.apply(ev.PolicyUpdate(PID, (), ()))
    assert s.dirty.endpoints == {ev.WorkloadEndpointID("ns", "w")} and s.dirty.policies == {PID}
    s.take_dirty()
    s.apply(ev.ConfigUpdate((("InterfacePrefix", "tap"),)))
    assert not s.dirty and s.config == DataplaneConfig()  # the graph's config events are not the dataplane's
    s.configure(DataplaneConfig())
    assert not s.dirty  # unchanged config is not a change
    s.configure(DataplaneConfig(interface_prefixes=("cali", "tap")))
    assert s.dirty.config and s.config.interface_prefixes == ("cali", "tap")
    s.apply(ev.IPSetDelta("x", frozenset({"198.18.0.2/32"}), frozenset({"198.18.0.1/32"})))
    assert s.ipsets["x"].members == {"198.18.0.2/32"}


def test_incremental_plan_is_proportional_and_ordered() -> None:
    s = full_state()
    planner = Planner()
    full = planner.plan(s, s.take_dirty())
    assert full.full
    planner.commit(full)
    # Nothing changed: empty transaction.
    assert planner.plan(s, s.take_dirty()).text == ""
    s.apply(ev.IPSetDelta("set1", frozenset({"198.18.2.0/24"}), frozenset({"fd00:c411::/64"})))
    p = planner.plan(s, s.take_dirty())
    assert p.text.splitlines() == [
        # additions re-declare the set with the new elements (cheap: no element-cache fetch by nft)
        "add set inet calico s4-set1 { type ipv4_addr; flags interval; elements = { 198.18.2.0/24 }; }",
        "delete element inet calico s6-set1 { fd00:c411::/64 }",
    ]
    planner.commit(p)
    # A new endpoint using a new set: set first, then chains, then map entries.
    s.apply(ev.IPSetUpdate("set2", ev.IPSetType.NET, frozenset({"198.18.5.0/24"})))
    s.apply(ev.PolicyUpdate(PID, inbound=(rule(src_ip_set_ids=("set2",)),), outbound=()))
    s.apply(ep("c", "cali0123456789c", tiers=[ev.TierInfo("default", "Deny", (PID,))]))
    p = planner.plan(s, s.take_dirty())
    lines = p.text.splitlines()
    first_set = min(i for i, ln in enumerate(lines) if ln.startswith("add set"))
    first_rule = min(i for i, ln in enumerate(lines) if ln.startswith("add rule"))
    first_map = min(i for i, ln in enumerate(lines) if "dispatch" in ln)
    assert first_set < first_rule < first_map
    assert any(ln.startswith("flush chain inet calico pi-default/ns1/web") for ln in lines)
    assert not any("fw-cali0123456789b" in ln for ln in lines)  # untouched endpoint untouched
    planner.commit(p)
    # Remove the endpoint and the set: map entries, then chains, then sets nobody uses.
    s.apply(ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns1", "c")))
    s.apply(ev.PolicyUpdate(PID, inbound=(), outbound=()))
    s.apply(ev.IPSetRemove("set2"))
    lines = planner.plan(s, s.take_dirty()).text.splitlines()
    i_map = lines.index('delete element inet calico fw-dispatch { "cali0123456789c" }')
    i_chain = lines.index("delete chain inet calico fw-cali0123456789c")
    i_set = lines.index("delete set inet calico s4-set2")
    assert i_map < i_chain < i_set


# --- nft -c inside a scratch namespace -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_ns() -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("needs root, nft and ip to check syntax in a scratch namespace")
    ns = f"cnt-{secrets.token_hex(3)}-render"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


def nft_check(ns: str, text: str, check_only: bool = True) -> None:
    args = ["-c", "-f", "-"] if check_only else ["-f", "-"]
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=text, capture_output=True,
                          text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr + "\n" + text


def test_rendered_text_is_valid_nft(scratch_ns: str) -> None:
    nft_check(scratch_ns, nft_text.render_replace(nft_table.empty_model(("cali", "tap"))))
    nft_check(scratch_ns, nft_text.render_replace(nft_table.render_model(full_state())))
    bad = full_state()  # a rule that cannot be rendered must not break the table it is in
    bad.apply(ev.PolicyUpdate(PID, inbound=(rule(protocol="nonsense"),), outbound=()))
    nft_check(scratch_ns, nft_text.render_replace(nft_table.render_model(bad)))


def test_incremental_plans_are_valid_nft(scratch_ns: str) -> None:
    s = full_state()
    planner = Planner()
    p = planner.plan(s, s.take_dirty())
    nft_check(scratch_ns, p.text, check_only=False)  # the scratch namespace is ours: load for real
    planner.commit(p)
    s.apply(ev.IPSetUpdate("set2", ev.IPSetType.IP_PORT, frozenset({"198.18.5.1,tcp:443"})))
    s.apply(ev.PolicyUpdate(PID, inbound=(rule(dst_named_port_set_ids=("set2",)),), outbound=()))
    s.apply(ep("c", "cali0123456789c", tiers=[ev.TierInfo("default", "Deny", (PID,))]))
    p = planner.plan(s, s.take_dirty())
    nft_check(scratch_ns, p.text, check_only=False)
    planner.commit(p)
    s.apply(ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns1", "c")))
    s.apply(ev.PolicyUpdate(PID, inbound=(), outbound=()))
    s.apply(ev.IPSetRemove("set2"))
    s.apply(ev.IPSetRemove("set1"))  # PID no longer names it either: the set is deleted
    p = planner.plan(s, s.take_dirty())
    nft_check(scratch_ns, p.text, check_only=False)
    subprocess.run(["ip", "netns", "exec", scratch_ns, "nft", "delete", "table", "inet", "calico"], check=True)


def test_unreferenced_set_still_desired_keeps_its_members() -> None:
    """A set whose last rule goes while the set stays in the state must not be deleted: when a rule names it
    again, the graph does not re-send its members."""
    s = DesiredState()
    members = frozenset({"198.18.1.0/24"})
    s.apply_all([ev.IPSetUpdate("set1", ev.IPSetType.NET, members),
                 ev.PolicyUpdate(PID, inbound=(rule(src_ip_set_ids=("set1",)),), outbound=())])
    planner = Planner()
    planner.commit(planner.plan(s, s.take_dirty()))
    name = nft_names.set_name("set1", 4, False)
    assert planner.applied is not None and name in planner.applied.sets
    s.apply(ev.PolicyRemove(PID))
    plan = planner.plan(s, s.take_dirty())
    planner.commit(plan)
    assert f"delete set {nft_names.FAMILY} {nft_names.TABLE} {name}" not in plan.text
    s.apply(ev.PolicyUpdate(PID, inbound=(rule(src_ip_set_ids=("set1",)),), outbound=()))
    plan = planner.plan(s, s.take_dirty())
    assert planner.applied.sets[name].elements, "members lost"
    s.apply(ev.IPSetRemove("set1"))
    s.apply(ev.PolicyRemove(PID))
    plan = planner.plan(s, s.take_dirty())
    assert f"delete set {nft_names.FAMILY} {nft_names.TABLE} {name}" in plan.text


def test_policy_group_chain_is_shared_and_removed_with_its_last_user() -> None:
    s = full_state()
    a = s.endpoints[ev.WorkloadEndpointID("ns1", "a")]
    s.apply(ep("twin", "cali0123456789t", a.tiers, a.profile_ids))
    planner = Planner()
    planner.commit(planner.plan(s, s.take_dirty()))
    group = nft_endpoints.endpoint_chains(a, s.policies, s.profiles)[3].name
    s.apply(ev.WorkloadEndpointRemove(a.endpoint_id))
    plan = planner.plan(s, s.take_dirty())
    planner.commit(plan)
    assert f"delete chain {nft_names.FAMILY} {nft_names.TABLE} {group}" not in plan.text  # "twin" still goes there
    assert f"delete chain {nft_names.FAMILY} {nft_names.TABLE} tw-cali0123456789a" in plan.text
    s.apply(ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns1", "twin")))
    plan = planner.plan(s, s.take_dirty())
    assert f"delete chain {nft_names.FAMILY} {nft_names.TABLE} {group}" in plan.text
    assert plan.text.index(f"flush chain {nft_names.FAMILY} {nft_names.TABLE} tw-cali0123456789t") < plan.text.index(
        f"delete chain {nft_names.FAMILY} {nft_names.TABLE} {group}")

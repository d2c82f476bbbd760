"""CalcGraph: ordering, tiers and profiles, activity, IP set membership, scoping and rendering."""

from __future__ import annotations

from calico.calculation.events import (
    ConfigUpdate,
    HostEndpointUpdate,
    InSync,
    IPSetDelta,
    IPSetRemove,
    IPSetType,
    PolicyID,
    PolicyRemove,
    PolicyUpdate,
    ProfileUpdate,
    TierInfo,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calculation.rule_scanner import INLINE_NETS_MAX
from tests.unit.calculation.builders import (
    HOST,
    Feeder,
    allow,
    check_valid,
    felix_config,
    gnp,
    hep,
    netset,
    np_,
    profile,
    tier,
    wep,
)

W1 = WorkloadEndpointID("ns1", "w1")
P1 = PolicyID("default", "p1")


def types_of(events: list) -> list[str]:
    return [type(e).__name__ for e in events]


def src_set(f: Feeder, name: str = "p1", tier_name: str = "default", ns: str | None = None, i: int = 0) -> str:
    return f.dp.policy_rules(name, tier_name, ns).inbound[i].src_ip_set_ids[0]


# ---- ordering and coalescing ------------------------------------------------------------------------


def test_start_of_day_order_and_in_sync_once() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("w2", node="n2", labels={"app": "db"}, ips=["10.0.0.2"]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "app == 'db'"})]),
    )
    f.graph.on_in_sync()
    events = f.flush()
    assert types_of(events) == ["ConfigUpdate", "IPSetUpdate", "PolicyUpdate", "WorkloadEndpointUpdate", "InSync"]
    assert f.dp.set_members(src_set(f)) == {"10.0.0.2/32"}
    f.graph.on_in_sync()
    assert f.flush() == []  # nothing changed, and InSync is sent only once


def test_teardown_order() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}, profiles=["prof"]),
        profile("prof", ingress=[allow(source={"selector": "app == 'x'"})]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "app == 'db'"})]),
    )
    f.flush()
    events = f.delete(wep("w1")).flush()
    assert types_of(events) == [
        "WorkloadEndpointRemove",
        "PolicyRemove",
        "ProfileRemove",
        "IPSetRemove",
        "IPSetRemove",
    ]
    assert f.dp.ipsets == {} and f.dp.policies == {} and f.dp.profiles == {}


def test_policy_switching_sets_orders_new_set_first_old_set_last() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "a == 'x'"})]),
    )
    f.flush()
    old = src_set(f)
    events = f.put(gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "a == 'y'"})])).flush()
    assert types_of(events) == ["IPSetUpdate", "PolicyUpdate", "IPSetRemove"]
    assert events[2] == IPSetRemove(old)


def test_coalescing_and_no_op() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        gnp("p1", selector="all()", ingress=[allow(source={"selector": "app == 'db'"})]),
    )
    f.flush()
    # Many changes to one endpoint inside one flush: one event with the final state.
    f.put(wep("w2", node="n2", labels={"app": "db"}, ips=["10.0.0.2"]))
    f.put(wep("w2", node="n2", labels={"app": "db"}, ips=["10.0.0.3"]))
    f.put(wep("w2", node="n2", labels={"app": "db"}, ips=["10.0.0.4"]))
    events = f.flush()
    assert events == [IPSetDelta(src_set(f), frozenset({"10.0.0.4/32"}), frozenset())]
    # A change that is undone within the flush, and a re-put of the same value: nothing.
    f.put(wep("w2", node="n2", labels={"app": "other"}, ips=["10.0.0.4"]))
    f.put(wep("w2", node="n2", labels={"app": "db"}, ips=["10.0.0.4"]))
    f.put(wep("w1", labels={"app": "web"}))
    f.put(gnp("p1", selector="all()", ingress=[allow(source={"selector": "app == 'db'"})]))
    assert f.flush() == []
    # A policy created and deleted between flushes never reaches the dataplane, nor do its sets.
    f.put(gnp("p2", selector="all()", ingress=[allow(source={"selector": "app == 'zzz'"})]))
    f.delete(gnp("p2"))
    assert f.flush() == []


# ---- tiers, Pass, profiles ----------------------------------------------------------------------------


def test_tiers_order_default_action_and_pass() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        tier("sec", order=10, default_action="Pass"),
        tier("alpha", order=10),  # ties by name: alpha before sec
        tier("late"),  # no order: after default (1000000)
        gnp("sec.b", tier="sec", order=5, selector="all()", ingress=[{"action": "Pass"}]),
        gnp("sec.a", tier="sec", order=5, selector="all()", egress=[allow()]),
        gnp("sec.first", tier="sec", order=1, selector="all()", ingress=[allow()]),
        gnp("sec.noorder", tier="sec", selector="all()", ingress=[allow()]),
        gnp("alpha.x", tier="alpha", selector="all()", ingress=[allow()]),
        gnp("late.x", tier="late", selector="all()", types=["Egress"], egress=[allow()]),
        np_("d1", selector="all()", ingress=[allow()]),
        gnp("orphan.x", tier="orphan", selector="all()", ingress=[allow()]),  # tier never created
    )
    f.flush()
    tiers = f.dp.weps[W1].tiers
    assert [t.name for t in tiers] == ["alpha", "sec", "default", "late", "orphan"]
    sec = tiers[1]
    assert sec.default_action == "Pass"
    assert sec.ingress_policies == (
        PolicyID("sec", "sec.first"),
        PolicyID("sec", "sec.b"),
        PolicyID("sec", "sec.noorder"),
    )
    assert sec.egress_policies == (PolicyID("sec", "sec.a"),)
    assert tiers[2] == TierInfo("default", "Deny", (PolicyID("default", "d1", "ns1"),), ())
    assert tiers[3] == TierInfo("late", "Deny", (), (PolicyID("late", "late.x"),))
    assert tiers[4].default_action == "Deny"
    assert f.dp.policies[PolicyID("sec", "sec.b")].inbound[0].action == "Pass"
    # Changing a tier's order re-sorts the endpoint's tiers; deleting it makes it last with Deny.
    events = f.put(tier("late", order=1)).flush()
    assert [type(e) for e in events] == [WorkloadEndpointUpdate]
    assert f.dp.weps[W1].tiers[0].name == "late"
    f.delete(tier("sec")).flush()
    tiers = f.dp.weps[W1].tiers
    assert [t.name for t in tiers] == ["late", "alpha", "default", "orphan", "sec"]
    assert tiers[-1].default_action == "Deny"


def test_default_tier_resource_overrides_builtin() -> None:
    f = Feeder()
    f.put(wep("w1"), gnp("p1", selector="all()", ingress=[allow()]), tier("t", order=2_000_000))
    f.put(gnp("t.p", tier="t", selector="all()", ingress=[allow()]))
    f.flush()
    assert [t.name for t in f.dp.weps[W1].tiers] == ["default", "t"]
    f.put(tier("default", order=3_000_000, default_action="Pass")).flush()
    assert [(t.name, t.default_action) for t in f.dp.weps[W1].tiers] == [("t", "Deny"), ("default", "Pass")]


def test_omits_tiers_without_applicable_policy_and_respects_types() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        tier("t1", order=1),
        gnp("t1.other", tier="t1", selector="app == 'db'", ingress=[allow()]),
        gnp("p1", selector="app == 'web'", types=["Ingress", "Egress"], ingress=[allow()]),
    )
    f.flush()
    assert f.dp.weps[W1].tiers == (TierInfo("default", "Deny", (P1,), (P1,)),)
    assert f.dp.policies[P1].outbound == ()  # no egress rules: nothing allowed outbound by it
    assert PolicyID("t1", "t1.other") not in f.dp.policies  # not active on this host


def test_profiles_in_order_and_missing_profile_renders_empty() -> None:
    f = Feeder()
    f.put(
        wep("w1", profiles=["b", "a", "missing"]),
        profile("a", ingress=[allow()]),
        profile("b", egress=[{"action": "Deny"}], ingress=[allow(protocol="TCP", destination={"ports": [22]})]),
        profile("unused", ingress=[allow()]),
    )
    events = f.flush()
    assert f.dp.weps[W1].profile_ids == ("b", "a", "missing")
    assert f.dp.weps[W1].tiers == ()
    assert f.dp.profiles["missing"] == ProfileUpdate("missing", (), ())
    assert f.dp.profiles["b"].inbound[0].dst_ports == ((22, 22),)
    assert f.dp.profiles["b"].outbound[0].action == "Deny"
    assert "unused" not in f.dp.profiles
    assert types_of(events) == ["ProfileUpdate"] * 3 + ["WorkloadEndpointUpdate"]
    # The profile arrives later: its update replaces the empty one; the endpoint is untouched.
    events = f.put(profile("missing", ingress=[allow()])).flush()
    assert types_of(events) == ["ProfileUpdate"]
    events = f.put(wep("w1", profiles=["a"])).flush()
    assert types_of(events) == ["WorkloadEndpointUpdate", "ProfileRemove", "ProfileRemove"]


# ---- activity and membership ------------------------------------------------------------------------


def test_label_changes_move_endpoint_in_and_out_of_policies_and_sets() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("r1", node="n2", labels={"role": "client"}, ips=["10.1.0.1"]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "role == 'client'"})]),
    )
    f.flush()
    sid = src_set(f)
    assert f.dp.set_members(sid) == {"10.1.0.1/32"}
    # The only local endpoint stops matching: the policy and its set go.
    events = f.put(wep("w1", labels={"app": "other"})).flush()
    assert types_of(events) == ["WorkloadEndpointUpdate", "PolicyRemove", "IPSetRemove"]
    assert f.dp.weps[W1].tiers == ()
    # Remote changes now cost nothing on this host: no set exists for them.
    assert f.put(wep("r2", node="n2", labels={"role": "client"}, ips=["10.1.0.2"])).flush() == []
    # It matches again: the set is rebuilt with both remote clients.
    events = f.put(wep("w1", labels={"app": "web"})).flush()
    assert types_of(events) == ["IPSetUpdate", "PolicyUpdate", "WorkloadEndpointUpdate"]
    assert f.dp.set_members(sid) == {"10.1.0.1/32", "10.1.0.2/32"}
    # A remote endpoint leaves the set by label, then its IP changes (no event: not a member).
    assert f.put(wep("r1", node="n2", labels={"role": "server"}, ips=["10.1.0.1"])).flush() == [
        IPSetDelta(sid, frozenset(), frozenset({"10.1.0.1/32"}))
    ]
    assert f.put(wep("r1", node="n2", labels={"role": "server"}, ips=["10.1.0.9"])).flush() == []
    # IP change of a member: one delta with both sides.
    assert f.put(wep("r2", node="n2", labels={"role": "client"}, ips=["10.1.0.3"])).flush() == [
        IPSetDelta(sid, frozenset({"10.1.0.3/32"}), frozenset({"10.1.0.2/32"}))
    ]
    # The local endpoint is itself a member when it matches.
    events = f.put(wep("w1", labels={"app": "web", "role": "client"})).flush()
    assert events[0] == IPSetDelta(sid, frozenset({"10.0.0.1/32"}), frozenset())


def test_remote_endpoints_are_members_but_not_local() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("r1", node="n2", labels={"app": "web"}, ips=["10.1.0.1", "fd00::1"]),
        hep("h-remote", node="n2", labels={"app": "web"}, ips=["192.168.1.2"]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "app == 'web'"})]),
    )
    f.flush()
    assert set(f.dp.weps) == {W1}
    assert f.dp.heps == {}
    assert f.dp.set_members(src_set(f)) == {"10.0.0.1/32", "10.1.0.1/32", "fd00::1/128", "192.168.1.2/32"}
    # Moving an endpoint to this host makes it local; moving it away removes it locally only.
    f.put(wep("r1", node=HOST, labels={"app": "web"}, ips=["10.1.0.1"])).flush()
    assert WorkloadEndpointID("ns1", "r1") in f.dp.weps
    events = f.put(wep("r1", node="n3", labels={"app": "web"}, ips=["10.1.0.1"])).flush()
    assert events == [WorkloadEndpointRemove(WorkloadEndpointID("ns1", "r1"))]


def test_duplicate_addresses_are_reference_counted() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("r1", node="n2", labels={"role": "c"}, ips=["10.9.0.1"]),
        wep("r2", node="n3", labels={"role": "c"}, ips=["10.9.0.1"]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "role == 'c'"})]),
    )
    f.flush()
    assert f.delete(wep("r1", node="n2")).flush() == []
    events = f.delete(wep("r2", node="n3")).flush()
    assert events == [IPSetDelta(src_set(f), frozenset(), frozenset({"10.9.0.1/32"}))]


def test_policy_and_profile_labels() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("r1", node="n2", profiles=["blue"], ips=["10.1.0.1"]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "color == 'blue'"})]),
    )
    f.flush()
    sid = src_set(f)
    assert f.dp.set_members(sid) == set()
    # Profile labels are parents: they arrive, change, and are overridden by own labels.
    assert f.put(profile("blue", {"color": "blue"})).flush() == [
        IPSetDelta(sid, frozenset({"10.1.0.1/32"}), frozenset())
    ]
    assert f.put(wep("r1", node="n2", labels={"color": "red"}, profiles=["blue"], ips=["10.1.0.1"])).flush() == [
        IPSetDelta(sid, frozenset(), frozenset({"10.1.0.1/32"}))
    ]
    # Effective labels are part of the local endpoint's update.
    f.put(wep("w1", labels={"app": "web"}, profiles=["blue"])).flush()
    labels = dict(f.dp.weps[W1].labels)
    assert labels["color"] == "blue" and labels["projectcalico.org/namespace"] == "ns1"


def test_policy_selector_change_and_order_change() -> None:
    f = Feeder()
    f.put(wep("w1", labels={"app": "web"}), wep("w2", labels={"app": "db"}, ips=["10.0.0.2"]))
    f.put(
        gnp("p1", selector="app == 'web'", order=1, ingress=[allow()]),
        gnp("p2", selector="all()", order=2, ingress=[allow()]),
    )
    f.flush()
    w2 = WorkloadEndpointID("ns1", "w2")
    assert f.dp.weps[w2].tiers[0].ingress_policies == (PolicyID("default", "p2"),)
    f.put(gnp("p1", selector="app == 'db'", order=1, ingress=[allow()])).flush()
    assert f.dp.weps[w2].tiers[0].ingress_policies == (P1, PolicyID("default", "p2"))
    assert f.dp.weps[W1].tiers[0].ingress_policies == (PolicyID("default", "p2"),)
    events = f.put(gnp("p1", selector="app == 'db'", order=3, ingress=[allow()])).flush()
    assert types_of(events) == ["WorkloadEndpointUpdate"]  # rules unchanged: no PolicyUpdate
    assert f.dp.weps[w2].tiers[0].ingress_policies == (PolicyID("default", "p2"), P1)


# ---- named ports, nets, network sets ----------------------------------------------------------------


def test_named_ports() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}, ports=[("http", "TCP", 8080)]),
        wep(
            "r1",
            node="n2",
            labels={"app": "api"},
            ips=["10.1.0.1", "fd00::1"],
            ports=[("http", "TCP", 80), ("dns", "UDP", 53)],
        ),
        wep("r2", node="n2", labels={"app": "other"}, ips=["10.1.0.2"], ports=[("http", "TCP", 81)]),
        wep("r3", node="n2", labels={"app": "api"}, ips=["10.1.0.3"], ports=[("http", "UDP", 82)]),
        gnp(
            "p1",
            selector="app == 'web'",
            egress=[
                allow(protocol="TCP", destination={"selector": "app == 'api'", "ports": ["http", 443, "1000:2000"]})
            ],
            ingress=[allow(protocol="TCP", destination={"ports": ["http"]})],
        ),
    )
    f.flush()
    out = f.dp.policies[P1].outbound[0]
    assert out.dst_ports == ((443, 443), (1000, 2000))
    assert len(out.dst_ip_set_ids) == 1 and len(out.dst_named_port_set_ids) == 1
    np_set = out.dst_named_port_set_ids[0]
    assert f.dp.ipsets[np_set][0] is IPSetType.IP_PORT
    assert f.dp.set_members(np_set) == {"10.1.0.1,tcp:80", "fd00::1,tcp:80"}
    # No selector: every endpoint with that named port.
    inbound = f.dp.policies[P1].inbound[0]
    assert inbound.dst_ip_set_ids == ()
    assert f.dp.set_members(inbound.dst_named_port_set_ids[0]) == {
        "10.0.0.1,tcp:8080",
        "10.1.0.1,tcp:80",
        "fd00::1,tcp:80",
        "10.1.0.2,tcp:81",
    }
    # A port number change is a delta on the named-port sets only.
    events = f.put(
        wep("r1", node="n2", labels={"app": "api"}, ips=["10.1.0.1", "fd00::1"], ports=[("http", "TCP", 8000)])
    ).flush()
    assert {e.set_id for e in events} == {np_set, inbound.dst_named_port_set_ids[0]}
    assert f.dp.set_members(np_set) == {"10.1.0.1,tcp:8000", "fd00::1,tcp:8000"}


def test_nets_inline_or_set_and_not_nets() -> None:
    many = [f"10.{i}.0.0/16" for i in range(INLINE_NETS_MAX + 1)]
    f = Feeder()
    f.put(
        wep("w1"),
        gnp(
            "p1",
            selector="all()",
            ingress=[
                allow(source={"nets": ["10.0.0.0/8"], "notNets": ["10.1.0.0/16"]}),
                allow(source={"nets": many}),
                allow(source={"notNets": many}),
            ],
        ),
    )
    f.flush()
    r0, r1, r2 = f.dp.policies[P1].inbound
    assert r0.src_nets == ("10.0.0.0/8",) and r0.not_src_nets == ("10.1.0.0/16",) and r0.ip_version == 4
    assert r1.src_nets == () and len(r1.src_ip_set_ids) == 1
    assert f.dp.set_members(r1.src_ip_set_ids[0]) == set(many)
    assert r2.not_src_ip_set_ids == r1.src_ip_set_ids  # one set for one list of nets


def test_network_sets_and_global_namespace_selector() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("r1", ns="ns2", node="n2", labels={"ext": "yes"}, ips=["10.2.0.1"]),
        netset("gns1", ["1.2.3.0/24", "5.6.7.8/32"], labels={"ext": "yes"}),
        netset("ns-set", ["9.9.9.0/24"], ns="ns1", labels={"ext": "yes"}),
        netset("ns2-set", ["8.8.8.0/24"], ns="ns2", labels={"ext": "yes"}),
        hep("h2", node="n2", labels={"ext": "yes"}, ips=["192.168.5.5"]),
        gnp(
            "p1",
            selector="all()",
            ingress=[
                allow(source={"selector": "ext == 'yes'"}),  # global policy: everything labelled
                allow(source={"selector": "ext == 'yes'", "namespaceSelector": "global()"}),  # only non-namespaced
            ],
        ),
        np_(
            "n1",
            selector="all()",
            ingress=[allow(source={"selector": "ext == 'yes'"})],  # only this namespace
        ),
    )
    f.flush()
    everything, global_only = f.dp.policies[P1].inbound
    assert f.dp.set_members(everything.src_ip_set_ids[0]) == {
        "10.2.0.1/32",
        "1.2.3.0/24",
        "5.6.7.8/32",
        "9.9.9.0/24",
        "8.8.8.0/24",
        "192.168.5.5/32",
    }
    assert f.dp.set_members(global_only.src_ip_set_ids[0]) == {"1.2.3.0/24", "5.6.7.8/32", "192.168.5.5/32"}
    ns_rule = f.dp.policies[PolicyID("default", "n1", "ns1")].inbound[0]
    assert f.dp.set_members(ns_rule.src_ip_set_ids[0]) == {"9.9.9.0/24"}
    # Network set nets change: a delta.
    events = f.put(netset("gns1", ["1.2.3.0/24"], labels={"ext": "yes"})).flush()
    assert {(e.set_id, e.removed) for e in events if isinstance(e, IPSetDelta)} == {
        (everything.src_ip_set_ids[0], frozenset({"5.6.7.8/32"})),
        (global_only.src_ip_set_ids[0], frozenset({"5.6.7.8/32"})),
    }


def test_namespaced_policy_scoping_and_namespace_selector() -> None:
    f = Feeder()
    f.put(
        wep("a1", ns="ns1", labels={"app": "web"}, ips=["10.0.0.1"]),
        wep("b1", ns="ns2", labels={"app": "web"}, ips=["10.0.0.2"]),
        wep("rb", ns="ns2", node="n2", labels={"app": "db"}, ips=["10.0.2.1"]),
        wep("ra", ns="ns1", node="n2", labels={"app": "db"}, ips=["10.0.1.1"]),
        profile("kns.ns2", {"team": "blue"}),
        np_(
            "p1",
            ns="ns1",
            selector="app == 'web'",
            ingress=[
                allow(source={"selector": "app == 'db'"}),
                allow(source={"selector": "app == 'db'", "namespaceSelector": "team == 'blue'"}),
                allow(source={"namespaceSelector": "projectcalico.org/name == 'ns2'"}),
                allow(source={"notSelector": "app == 'db'"}),
            ],
        ),
    )
    f.flush()
    pid = PolicyID("default", "p1", "ns1")
    # The policy applies only in its namespace.
    assert f.dp.weps[WorkloadEndpointID("ns1", "a1")].tiers[0].ingress_policies == (pid,)
    assert f.dp.weps[WorkloadEndpointID("ns2", "b1")].tiers == ()
    same_ns, blue_ns, by_name, not_sel = f.dp.policies[pid].inbound
    assert f.dp.set_members(same_ns.src_ip_set_ids[0]) == {"10.0.1.1/32"}
    assert f.dp.set_members(blue_ns.src_ip_set_ids[0]) == {"10.0.2.1/32"}
    assert f.dp.set_members(by_name.src_ip_set_ids[0]) == {"10.0.0.2/32", "10.0.2.1/32"}
    # notSelector is a negative match, not namespace-scoped: not in the set (so non-Calico peers match).
    assert not_sel.src_ip_set_ids == ()
    assert f.dp.set_members(not_sel.not_src_ip_set_ids[0]) == {"10.0.1.1/32", "10.0.2.1/32"}
    # Namespace labels change: membership follows.
    events = f.put(profile("kns.ns2", {"team": "red"})).flush()
    assert IPSetDelta(blue_ns.src_ip_set_ids[0], frozenset(), frozenset({"10.0.2.1/32"})) in events
    # Endpoints cannot claim a namespace or namespace labels themselves.
    f.put(
        wep(
            "fake",
            ns="ns1",
            node="n2",
            labels={"app": "db", "pcns.team": "red", "projectcalico.org/namespace": "ns2"},
            ips=["10.0.1.9"],
        )
    ).flush()
    assert "10.0.1.9/32" not in f.dp.set_members(blue_ns.src_ip_set_ids[0])
    assert "10.0.1.9/32" in f.dp.set_members(same_ns.src_ip_set_ids[0])


def test_global_policy_namespace_selector_and_service_accounts() -> None:
    f = Feeder()
    f.put(
        wep("a1", ns="ns1", labels={"app": "web"}, serviceAccountName="sa1"),
        wep("b1", ns="ns2", labels={"app": "web"}, ips=["10.0.0.2"], serviceAccountName="sa2"),
        profile("kns.ns2", {"env": "prod"}),
        gnp(
            "p1",
            selector="app == 'web'",
            namespaceSelector="env == 'prod'",
            ingress=[allow(source={"serviceAccounts": {"names": ["sa1"]}})],
        ),
    )
    f.flush()
    assert f.dp.weps[WorkloadEndpointID("ns1", "a1")].tiers == ()
    assert f.dp.weps[WorkloadEndpointID("ns2", "b1")].tiers[0].ingress_policies == (P1,)
    assert f.dp.set_members(src_set(f)) == {"10.0.0.1/32"}


def test_policy_service_account_selector() -> None:
    f = Feeder()
    f.put(
        wep("a1", labels={"app": "web"}, serviceAccountName="sa1", profiles=["ksa.ns1.sa1"]),
        wep("a2", labels={"app": "web"}, ips=["10.0.0.2"], serviceAccountName="sa2", profiles=["ksa.ns1.sa2"]),
        profile("ksa.ns1.sa1", {"pcsa.role": "admin"}),
        profile("ksa.ns1.sa2", {"pcsa.role": "user"}),
        np_("p1", selector="app == 'web'", serviceAccountSelector="role == 'admin'", ingress=[allow()]),
    )
    f.flush()
    assert f.dp.weps[WorkloadEndpointID("ns1", "a1")].tiers[0].ingress_policies == (PolicyID("default", "p1", "ns1"),)
    assert f.dp.weps[WorkloadEndpointID("ns1", "a2")].tiers == ()


# ---- host endpoints ---------------------------------------------------------------------------------


def test_host_endpoint_tier_kinds() -> None:
    f = Feeder()
    f.put(
        hep("h1", labels={"role": "node"}),
        gnp("normal", selector="role == 'node'", ingress=[allow()]),
        gnp("fwd", selector="role == 'node'", applyOnForward=True, ingress=[allow()]),
        gnp("untracked", selector="role == 'node'", doNotTrack=True, applyOnForward=True, ingress=[allow()]),
        gnp("prednat", selector="role == 'node'", preDNAT=True, applyOnForward=True, ingress=[allow()]),
        wep("w1", labels={"role": "node"}),
    )
    f.flush()
    h = f.dp.heps["h1"]
    assert isinstance(h, HostEndpointUpdate)
    names = lambda tiers: [p.name for t in tiers for p in t.ingress_policies]  # noqa: E731
    assert names(h.tiers) == ["fwd", "normal"]
    assert names(h.forward_tiers) == ["fwd"]
    assert names(h.untracked_tiers) == ["untracked"]
    assert names(h.pre_dnat_tiers) == ["prednat"]
    assert h.iface == "eth0" and h.expected_ips == ("192.168.0.1",)
    # Workloads never get doNotTrack / preDNAT policies.
    assert names(f.dp.weps[W1].tiers) == ["fwd", "normal"]
    assert f.dp.policies[PolicyID("default", "untracked")].untracked
    assert f.dp.policies[PolicyID("default", "prednat")].pre_dnat


# ---- rendering ------------------------------------------------------------------------------------


def test_rendering_fields_and_rule_ids() -> None:
    f = Feeder()
    rule = {
        "action": "Deny",
        "protocol": "ICMP",
        "icmp": {"type": 8, "code": 0},
        "notICMP": {"type": 3},
        "source": {"nets": ["10.0.0.0/8"]},
    }
    f.put(
        wep("w1"),
        gnp(
            "p1",
            selector="all()",
            ingress=[
                rule,
                {"action": "Log"},
                allow(protocol=6, notProtocol="UDP", destination={"notPorts": [22, "8000:9000"]}),
            ],
            egress=[allow(ipVersion=6, protocol="ICMPv6")],
        ),
    )
    f.flush()
    deny, log, tcp = f.dp.policies[P1].inbound
    assert (deny.action, deny.protocol, deny.icmp_type, deny.icmp_code, deny.not_icmp_type) == ("Deny", "ICMP", 8, 0, 3)
    assert deny.ip_version == 4 and log.action == "Log"
    assert (tcp.protocol, tcp.not_protocol, tcp.not_dst_ports) == (6, "UDP", ((22, 22), (8000, 9000)))
    out = f.dp.policies[P1].outbound[0]
    assert (out.ip_version, out.protocol) == (6, "ICMPv6")
    ids = [r.rule_id for r in (deny, log, tcp, out)]
    assert len(set(ids)) == 4 and all(len(i) == 16 for i in ids)
    # Stable: another graph gives the same ids and set ids.
    g = Feeder().put(
        wep("w1"),
        gnp(
            "p1",
            selector="all()",
            ingress=[
                rule,
                {"action": "Log"},
                allow(protocol=6, notProtocol="UDP", destination={"notPorts": [22, "8000:9000"]}),
            ],
            egress=[allow(ipVersion=6, protocol="ICMPv6")],
        ),
    )
    g.flush()
    assert g.dp.policies == f.dp.policies


def test_shared_sets_across_policies_and_profiles() -> None:
    f = Feeder()
    f.put(
        wep("w1", profiles=["prof"]),
        gnp("p1", selector="all()", ingress=[allow(source={"selector": "app == 'db'"})]),
        gnp("p2", selector="all()", egress=[allow(destination={"selector": "app == 'db'"})]),
        profile("prof", ingress=[allow(source={"selector": "app == 'db'"})]),
    )
    f.flush()
    assert len(f.dp.ipsets) == 1
    sid = next(iter(f.dp.ipsets))
    assert f.delete(gnp("p1")).flush()[1:] == [PolicyRemove(P1)]
    assert f.delete(gnp("p2")).flush()[1:] == [PolicyRemove(PolicyID("default", "p2"))]
    assert f.delete(profile("prof")).flush() == [ProfileUpdate("prof", (), ()), IPSetRemove(sid)]


def test_unrenderable_rules_fail_closed() -> None:
    f = Feeder()
    doc = gnp(
        "p1",
        selector="all()",
        ingress=[
            allow(http={"methods": ["GET"]}),
            {"action": "Deny", "protocol": "TCP", "source": {"services": {"name": "svc", "namespace": "ns1"}}},
            allow(),
        ],
    )
    check_valid(doc)
    f.put(wep("w1"), doc).flush()
    rules = f.dp.policies[P1].inbound
    # The HTTP Allow is left out; the service Deny denies all TCP; the plain Allow stays after it.
    assert [(r.action, r.protocol, r.src_ip_set_ids) for r in rules] == [("Deny", "TCP", ()), ("Allow", None, ())]


# ---- config -------------------------------------------------------------------------------------


def test_felix_configuration_merge() -> None:
    f = Feeder()
    f.put(felix_config("default", logSeverityScreen="Info", ipipEnabled=False))
    f.graph.on_in_sync()
    events = f.flush()
    assert events == [ConfigUpdate((("ipipEnabled", False), ("logSeverityScreen", "Info"))), InSync()]
    assert f.put(felix_config("node.other", logSeverityScreen="Debug")).flush() == []
    events = f.put(
        felix_config(
            f"node.{HOST}",
            logSeverityScreen="Debug",
            failsafeInboundHostPorts=[{"protocol": "TCP", "port": 22}],
        )
    ).flush()
    assert events == [
        ConfigUpdate(
            (
                ("failsafeInboundHostPorts", ((("port", 22), ("protocol", "TCP")),)),
                ("ipipEnabled", False),
                ("logSeverityScreen", "Debug"),
            )
        )
    ]
    assert (
        f.put(
            felix_config(
                f"node.{HOST}", logSeverityScreen="Debug", failsafeInboundHostPorts=[{"protocol": "TCP", "port": 22}]
            )
        ).flush()
        == []
    )
    f.delete(felix_config(f"node.{HOST}"))
    assert f.flush() == [ConfigUpdate((("ipipEnabled", False), ("logSeverityScreen", "Info")))]


def test_ignores_unfollowed_keys() -> None:
    f = Feeder()
    f.graph.on_update("/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26", b"{}")
    f.graph.on_update("/calico/resources/v3/projectcalico.org/ippools/p", b"{}")
    f.graph.on_update("/calico/resources/v3/projectcalico.org/nodes/n1", b"garbage")
    f.graph.on_update("/calico/resources/v3/projectcalico.org/workloadendpoints/no-namespace", b"{}")
    f.graph.on_update("/elsewhere", None)
    assert f.flush() == []


def test_policy_update_events_are_plain_data() -> None:
    f = Feeder()
    f.put(wep("w1"), gnp("p1", selector="all()", ingress=[allow()])).flush()
    update = f.dp.policies[P1]
    assert isinstance(update, PolicyUpdate)
    hash(update)  # frozen, hashable all the way down
    assert isinstance(f.dp.weps[W1], WorkloadEndpointUpdate)

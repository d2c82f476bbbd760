"""Bad values: logged, never raised, never opening traffic (see `calico.calculation.graph`)."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calculation.events import (
    HostEndpointUpdate,
    IPSetDelta,
    PolicyID,
    RenderedRule,
    TierInfo,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
)
from tests.unit.calculation.builders import (
    PREFIX,
    Feeder,
    allow,
    encode,
    felix_config,
    gnp,
    hep,
    key_of,
    netset,
    np_,
    profile,
    tier,
    wep,
)

W1 = WorkloadEndpointID("ns1", "w1")
P1 = PolicyID("default", "p1")


def corrupt(doc: dict) -> list[bytes]:
    """Several kinds of bad value for the key of `doc`."""
    wrong_kind = dict(doc, kind="Profile")
    other_name = dict(doc, metadata={**doc["metadata"], "name": "someone-else"})
    bad_field = dict(doc, spec={**doc.get("spec", {}), "noSuchField": 1})
    return [b"\xff not json", b"[1, 2]", encode(wrong_kind), encode(other_name), encode(bad_field), b""]


@pytest.mark.parametrize("variant", range(6))
def test_bad_workload_we_knew_is_removed(variant: int, caplog: pytest.LogCaptureFixture) -> None:
    doc = wep("w1", labels={"app": "web"})
    f = Feeder().put(doc, wep("w2", labels={"app": "x"}, ips=["10.0.0.2"]))
    f.put(gnp("p1", selector="app == 'x'", ingress=[allow(source={"selector": "app == 'web'"})]))
    f.flush()
    sid = f.dp.policy_rules("p1").inbound[0].src_ip_set_ids[0]
    with caplog.at_level(logging.WARNING):
        f.put_raw(key_of(doc), corrupt(doc)[variant])
    events = f.flush()
    assert WorkloadEndpointRemove(W1) in events
    assert IPSetDelta(sid, frozenset(), frozenset({"10.0.0.1/32"})) in events
    assert "removing the endpoint" in caplog.text


@pytest.mark.parametrize("variant", range(6))
def test_never_valid_values_are_ignored(variant: int, caplog: pytest.LogCaptureFixture) -> None:
    f = Feeder().put(wep("w1"), gnp("p0", selector="all()", ingress=[allow()]))
    f.flush()
    with caplog.at_level(logging.WARNING):
        for doc in (
            wep("w9"),
            hep("h9"),
            gnp("p9", selector="all()"),
            np_("p9"),
            profile("kns.ns1"),
            tier("t9"),
            netset("s9", ["1.2.3.4"]),
            felix_config("default"),
        ):
            f.put_raw(key_of(doc), corrupt(doc)[variant])
    assert f.flush() == []
    assert "ignored, no good value known" in caplog.text


def test_bad_policy_we_knew_denies_in_its_directions() -> None:
    doc = gnp(
        "p1",
        selector="app == 'web'",
        types=["Ingress", "Egress"],
        ingress=[allow(source={"selector": "app == 'db'"})],
        egress=[allow()],
    )
    f = Feeder().put(wep("w1", labels={"app": "web"}), doc)
    f.flush()
    tiers_before = f.dp.weps[W1].tiers
    sid = f.dp.policy_rules("p1").inbound[0].src_ip_set_ids[0]
    f.put_raw(key_of(doc), b'{"kind": "GlobalNetworkPolicy", "broken": ')
    events = f.flush()
    update = f.dp.policies[P1]
    assert [r.action for r in update.inbound] == ["Deny"] and [r.action for r in update.outbound] == ["Deny"]
    assert update.inbound[0] == RenderedRule(action="Deny", rule_id=update.inbound[0].rule_id)
    assert sid not in f.dp.ipsets  # its old sets are released after the policy stopped using them
    assert [type(e).__name__ for e in events] == ["PolicyUpdate", "IPSetRemove"]
    assert f.dp.weps[W1].tiers == tiers_before  # still applies where it applied
    # Still tracked by selector: a new matching endpoint gets it too.
    f.put(wep("w2", labels={"app": "web"}, ips=["10.0.0.2"])).flush()
    assert f.dp.weps[WorkloadEndpointID("ns1", "w2")].tiers == tiers_before
    # A good value restores it; a delete removes it.
    f.put(doc).flush()
    assert f.dp.policies[P1].inbound[0].action == "Allow"
    f.put_raw(key_of(doc), b"nope").flush()
    f.delete(doc).flush()
    assert P1 not in f.dp.policies and f.dp.weps[W1].tiers == ()


def test_bad_ingress_only_policy_denies_only_ingress() -> None:
    doc = np_("p1", selector="all()", ingress=[allow()])
    f = Feeder().put(wep("w1"), doc)
    f.flush()
    f.put_raw(key_of(doc), encode(dict(doc, spec={"selector": "&&&"})))
    f.flush()
    update = f.dp.policies[PolicyID("default", "p1", "ns1")]
    assert [r.action for r in update.inbound] == ["Deny"] and update.outbound == ()


def test_bad_profile_we_knew_denies_and_keeps_labels() -> None:
    prof = profile("blue", {"color": "blue"}, ingress=[allow()], egress=[allow()])
    f = Feeder().put(
        wep("w1", profiles=["blue"]),
        wep("r1", node="n2", profiles=["blue"], ips=["10.1.0.1"]),
        prof,
        gnp("p1", selector="all()", ingress=[allow(source={"selector": "color == 'blue'"})]),
    )
    f.flush()
    sid = f.dp.policy_rules("p1").inbound[0].src_ip_set_ids[0]
    members = f.dp.set_members(sid)
    f.put_raw(key_of(prof), b"{}")
    events = f.flush()
    assert [type(e).__name__ for e in events] == ["ProfileUpdate"]
    assert [r.action for r in f.dp.profiles["blue"].inbound] == ["Deny"]
    assert [r.action for r in f.dp.profiles["blue"].outbound] == ["Deny"]
    assert f.dp.set_members(sid) == members == {"10.0.0.1/32", "10.1.0.1/32"}


def test_bad_tier_we_knew_keeps_order_and_denies_by_default() -> None:
    t = tier("t1", order=5, default_action="Pass")
    f = Feeder().put(wep("w1"), t, gnp("t1.p", tier="t1", selector="all()", ingress=[allow()]))
    f.put(gnp("p1", selector="all()", ingress=[allow()]))
    f.flush()
    assert f.dp.weps[W1].tiers[0] == TierInfo("t1", "Pass", (PolicyID("t1", "t1.p"),), ())
    f.put_raw(key_of(t), encode(dict(t, spec={"defaultAction": "Maybe"})))
    f.flush()
    assert f.dp.weps[W1].tiers[0] == TierInfo("t1", "Deny", (PolicyID("t1", "t1.p"),), ())


def test_bad_host_endpoint_we_knew_gets_no_policy() -> None:
    h = hep("h1", labels={"role": "node"}, profiles=["p"])
    f = Feeder().put(
        h,
        wep("w1", labels={"role": "node"}),
        hep("h2", node="n2", labels={"role": "node"}, ips=["192.168.0.2"]),
        profile("p", ingress=[allow()]),
        gnp("p1", selector="role == 'node'", ingress=[allow(source={"selector": "role == 'node'"})]),
    )
    f.flush()
    sid = f.dp.policy_rules("p1").inbound[0].src_ip_set_ids[0]
    f.put_raw(key_of(h), b"garbage")
    f.put_raw(key_of(hep("h2", node="n2")), b"garbage")  # remote: membership stays as last agreed
    events = f.flush()
    update = f.dp.heps["h1"]
    assert isinstance(update, HostEndpointUpdate)
    assert (update.tiers, update.profile_ids, update.iface) == ((), (), "eth0")
    assert f.dp.set_members(sid) == {"10.0.0.1/32", "192.168.0.1/32", "192.168.0.2/32"}
    assert [type(e).__name__ for e in events] == ["HostEndpointUpdate", "ProfileRemove"]
    f.put(h).flush()
    assert f.dp.heps["h1"].profile_ids == ("p",)


def test_bad_network_set_and_config_keep_last_good() -> None:
    s = netset("s1", ["1.2.3.0/24"], labels={"ext": "y"})
    cfg = felix_config("default", logSeverityScreen="Info")
    f = Feeder().put(wep("w1"), s, cfg, gnp("p1", selector="all()", ingress=[allow(source={"selector": "ext == 'y'"})]))
    f.flush()
    f.put_raw(key_of(s), b"bad").put_raw(key_of(cfg), b"bad")
    assert f.flush() == []
    f.delete(s)
    assert [type(e).__name__ for e in f.flush()] == ["IPSetDelta"]


PLURALS = [
    "workloadendpoints/ns1",
    "hostendpoints",
    "profiles",
    "tiers",
    "networkpolicies/ns1",
    "globalnetworkpolicies",
    "networksets/ns1",
    "globalnetworksets",
    "felixconfigurations",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(PLURALS),
            st.sampled_from(["w1", "default", "p1", "kns.ns1", "node.n1"]),
            st.one_of(
                st.binary(max_size=40),
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8,
                ).map(lambda v: json.dumps(v).encode()),
            ),
        ),
        max_size=8,
    )
)
def test_garbage_never_crashes(updates: list[tuple[str, str, bytes]]) -> None:
    f = Feeder().put(wep("w1"), gnp("p1", selector="all()", ingress=[allow()]), profile("kns.ns1", {"a": "b"}))
    f.flush()
    for plural, name, value in updates:
        f.graph.on_update(f"{PREFIX}{plural}/{name}", value)
    f.flush()
    # Nothing opened: the policy is either as before or deny-all; the endpoint is either as before or gone.
    if P1 in f.dp.policies:
        assert [r.action for r in f.dp.policies[P1].inbound] in (["Allow"], ["Deny"])

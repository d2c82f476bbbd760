"""Explanations from snapshots (no datastore): tiers, Pass, defaults, profiles, fail-closed cases, staged policies."""

from __future__ import annotations

import pytest

from calico.explain.snapshot import Snapshot
from tests.unit.explain.world_helpers import OPEN_PROFILE, run, snapshot, wep

WEB = wep("web", "198.18.0.2/32", labels="{app: web}", extra="  ports: [{name: http-alt, protocol: TCP, port: 8080}]")
CLIENT = wep("client", "198.18.0.3/32", node="h2", labels="{app: client}", extra="  profiles: [open]")
OPEN = OPEN_PROFILE
TIER = """
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
"""
PASS_WEB = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.pass-web}
spec:
  tier: security
  selector: app == 'web'
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [22]}}
  - {action: Log}
  - {action: Pass, source: {selector: app == 'client'}}
"""
ALLOW_HTTP = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: allow-http, namespace: ns1}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [80, http-alt]}}
"""


def world(*extra: str) -> Snapshot:
    return snapshot(TIER, PASS_WEB, ALLOW_HTTP, WEB, CLIENT, OPEN, *extra)


def test_pass_then_allow_in_the_next_tier() -> None:
    e = run(world(), "ns1/client", "ns1/web", port=8080)
    assert e.verdict == "allow"
    egress, ingress = e.enforced.stages
    assert (egress.stage, egress.verdict, egress.profiles[0].name) == ("egress", "allow", "open")
    security, default = ingress.tiers
    assert (security.name, security.outcome) == ("security", "pass")
    passing = security.policies[0]
    assert [(r.index, r.action, r.matched) for r in passing.rules] == [(0, "Deny", False), (1, "Log", True),
                                                                       (2, "Pass", True)]
    assert passing.rules[0].why_not == ["destination ports: 8080 is not in 22"]
    assert (default.outcome, default.policies[0].name, default.policies[0].outcome) == ("allow", "ns1/allow-http",
                                                                                        "allow")
    assert "named port" not in str(default.policies[0].rules[0].why_not)  # matched by the named port
    assert ingress.reason == "allowed by tier default, policy ns1/allow-http rule 0"
    assert e.to_json()["verdict"] == "allow"


def test_deny_rule_and_tier_default() -> None:
    denied = run(world(), "ns1/client", "ns1/web", port=22)
    assert denied.verdict == "deny"
    assert denied.enforced.stages[1].tiers[0].outcome == "deny"
    nothing = run(world(), "ns1/client", "ns1/web", port=443)
    assert nothing.verdict == "deny"
    assert nothing.enforced.stages[1].tiers[-1].outcome == "end-deny"
    assert "default action is Deny" in nothing.enforced.reason


def test_tier_default_pass_goes_on_to_the_profiles() -> None:
    tier = TIER.replace("{order: 100}", "{order: 100, defaultAction: Pass}")
    web = WEB.replace("  ports:", "  profiles: [open]\n  ports:")
    only_ssh = PASS_WEB.replace("  - {action: Log}\n  - {action: Pass, source: {selector: app == 'client'}}\n", "")
    e = run(snapshot(tier, only_ssh, web, CLIENT, OPEN), "ns1/client", "ns1/web", port=443)
    assert e.verdict == "allow"
    ingress = e.enforced.stages[1]
    assert ingress.tiers[0].outcome == "end-pass"
    assert ingress.reason == "allowed by profile open rule 0"


def test_no_policy_no_profile_is_default_drop() -> None:
    e = run(snapshot(wep("a", "198.18.0.5/32"), wep("b", "198.18.0.6/32")), "ns1/a", "ns1/b")
    assert e.verdict == "deny"
    assert e.enforced.stages[0].reason == "no policy and no profile applies: default drop"


def test_missing_profile_fails_closed() -> None:
    e = run(snapshot(wep("a", "198.18.0.5/32", extra="  profiles: [nowhere]"), WEB), "ns1/a", "ns1/web")
    assert e.verdict == "deny"
    assert e.enforced.stages[0].profiles[0].outcome == "no-match"  # a named profile that is not there: no rules


def test_anti_spoofing_and_addresses() -> None:
    e = run(world(), "198.18.0.3", "ns1/web", port=80)
    assert e.source == "ns1/client"  # an endpoint's address is that endpoint
    assert e.verdict == "allow"
    outside = run(world(), "198.19.9.9", "ns1/web", port=80)
    assert [s.stage for s in outside.enforced.stages] == ["ingress"]
    assert outside.verdict == "deny"
    assert "198.19.9.9 is not in selector" in str(outside.enforced.stages[0].tiers[0].policies[0].rules)


def test_icmp_and_protocol_matches() -> None:
    icmp_only = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: ping, namespace: ns1}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}
  - {action: Allow, protocol: UDP, notProtocol: TCP, destination: {notPorts: [53]}}
"""
    snap = snapshot(WEB, CLIENT, OPEN, icmp_only)
    assert run(snap, "ns1/client", "ns1/web", protocol="icmp", icmp_type=8, icmp_code=0).verdict == "allow"
    e = run(snap, "ns1/client", "ns1/web", protocol="icmp", icmp_type=0)
    assert e.verdict == "deny"
    assert e.enforced.stages[1].tiers[0].policies[0].rules[0].why_not == ["icmp: not type 8 code 0"]
    assert run(snap, "ns1/client", "ns1/web", protocol="udp", port=123).verdict == "allow"
    assert run(snap, "ns1/client", "ns1/web", protocol="udp", port=53).verdict == "deny"


def test_ipv6_flow_and_icmp_meaning_icmpv6() -> None:
    v6 = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: v6}
spec:
  selector: app == 'web6'
  ingress:
  - {action: Allow, protocol: ICMPv6, source: {nets: ["fd00:1::/64"]}}
"""
    snap = snapshot(wep("web6", "fd00:1::2/128", labels="{app: web6}"), v6,
                    wep("c6", "fd00:1::3/128", extra="  profiles: [open]"), OPEN, WEB)
    e = run(snap, "ns1/c6", "ns1/web6", protocol="icmp", icmp_type=128)
    assert e.verdict == "allow"
    assert "ICMPv6" in e.notes[0]
    with pytest.raises(ValueError, match="no address family in common"):
        run(snap, "ns1/c6", "ns1/web", port=80)


def test_unknown_endpoint_and_bad_options() -> None:
    with pytest.raises(LookupError, match="no WorkloadEndpoint ns1/ghost"):
        run(world(), "ns1/ghost", "ns1/web")
    with pytest.raises(ValueError, match="--port: a tcp flow needs a destination port"):
        run(world(), "ns1/client", "ns1/web", port=None)


STAGED_DENY = """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: allow-http, namespace: ns1}
spec:
  selector: app == 'web'
  stagedAction: Set
  ingress: [{action: Deny}]
"""


def test_staged_deny_is_pending_only() -> None:
    e = run(world(STAGED_DENY), "ns1/client", "ns1/web", port=80)
    assert e.verdict == "allow"
    assert e.pending is not None and e.pending.verdict == "deny"
    assert e.to_json()["pendingVerdict"] == "deny"
    assert "ns1/allow-http rule 0" in e.pending.reason


def test_staged_delete_removes_the_policy_in_the_pending_world() -> None:
    delete = STAGED_DENY.replace("stagedAction: Set", "stagedAction: Delete")
    e = run(world(delete), "ns1/client", "ns1/web", port=80)
    assert (e.verdict, e.pending and e.pending.verdict) == ("allow", "deny")
    assert e.pending is not None
    # allow-http gone: the security tier passes, no default-tier policy applies, web has no profile
    assert [t.name for t in e.pending.stages[1].tiers] == ["security"]
    assert e.pending.stages[1].reason == "nothing allowed it: default drop at the end of the profiles"
    assert run(world(), "ns1/client", "ns1/web", port=80).pending is None  # nothing staged: no pending verdict


def test_host_endpoint_failsafe_and_policy() -> None:
    hep = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1-eth0, labels: {role: host}}
spec: {node: h1, interfaceName: eth0, expectedIPs: [198.19.1.1]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-web}
spec:
  selector: role == 'host'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [443]}}]
"""
    snap = snapshot(hep, CLIENT, OPEN)
    assert run(snap, "ns1/client", "hep:h1-eth0", port=22).enforced.stages[1].reason.startswith("a failsafe port")
    assert run(snap, "ns1/client", "198.19.1.1", port=443).verdict == "allow"
    assert run(snap, "ns1/client", "hep:h1-eth0", port=444).verdict == "deny"


def test_pending_verdicts_of_many_flows() -> None:
    from calico.explain.flow import Flow
    from calico.explain.pending import pending_verdicts

    flows = [Flow("198.18.0.3", "198.18.0.2", 6, 40000, 80), Flow("198.18.0.3", "198.18.0.2", 6, 40001, 22)]
    assert pending_verdicts(world(), flows) == {}  # nothing staged
    got = pending_verdicts(world(STAGED_DENY), flows)
    assert [got[f].verdict for f in flows] == ["deny", "deny"]
    assert "ns1/allow-http rule 0" in got[flows[0]].reason


def test_a_floating_ip_is_its_endpoints_address_after_dnat() -> None:
    fip_web = WEB.replace("  ports:", "  ipNATs: [{internalIP: 198.18.0.2, externalIP: 198.19.128.5}]\n  ports:")
    e = run(snapshot(TIER, PASS_WEB, ALLOW_HTTP, fip_web, CLIENT, OPEN), "ns1/client", "198.19.128.5", port=80)
    assert (e.destination, e.verdict) == ("ns1/web", "allow")
    assert e.flow == "tcp 198.18.0.3:* -> 198.18.0.2:80"
    assert "floating IP" in e.notes[0]


def test_counters_from_felix_status_are_attached_to_the_rules() -> None:
    import json

    from calico.explain.counters import attach_counters

    e = run(world(), "ns1/client", "ns1/web", port=8080)
    h1 = {"time": "t", "verdicts": [], "rules": [
        {"kind": "policy", "tier": "default", "namespace": "ns1", "name": "allow-http", "direction": "ingress",
         "rule": 0, "action": "allow", "packets": 5, "bytes": 300},
        {"kind": "policy", "tier": "default", "namespace": "ns1", "name": "allow-http", "direction": "egress",
         "rule": 0, "action": "allow", "packets": 99, "bytes": 99},  # another direction: not this stage's
        {"kind": "profile", "tier": "", "namespace": "", "name": "open", "direction": "egress", "rule": 0,
         "action": "allow", "packets": 2, "bytes": 120}]}
    h2 = dict(h1, rules=h1["rules"][:1])
    prefix = "/calico/felix/v2/no-region/host/"
    attach_counters(e, [(f"{prefix}h1/policy_counters", json.dumps(h1).encode()),
                        (f"{prefix}h2/policy_counters", json.dumps(h2).encode()),
                        (f"{prefix}h3/policy_counters", b"garbage"), (f"{prefix}h1/status", b"{}")])
    egress, ingress = e.enforced.stages
    assert (egress.profiles[0].rules[0].packets, egress.profiles[0].rules[0].bytes) == (2, 120)
    allow = ingress.tiers[1].policies[0]
    assert (allow.rules[0].packets, allow.rules[0].bytes, allow.counted_on) == (10, 600, ["h1", "h2"])
    assert ingress.tiers[0].policies[0].rules[0].packets == 0  # counted nothing
    assert any("host h3" in n for n in e.notes)


def test_what_the_graph_refuses_is_named_in_the_notes() -> None:
    snap = world()
    snap.values["/calico/resources/v3/projectcalico.org/globalnetworkpolicies/broken"] = (
        b'{"kind": "GlobalNetworkPolicy", "apiVersion": "projectcalico.org/v3", "metadata": {"name": "broken"},'
        b' "spec": {"selector": "app ==="}}')
    e = run(snap, "ns1/client", "ns1/web", port=80)
    assert e.verdict == "allow"
    assert any("GlobalNetworkPolicy broken" in n and "spec.selector" in n for n in e.notes), e.notes

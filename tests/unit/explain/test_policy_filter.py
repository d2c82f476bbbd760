"""The explanation's world feeds the graph only the policies that can select the flow's endpoints: the answer is
the one computed with every policy fed, and what is wrong with a stored policy that concerns them stays in the
notes."""

from __future__ import annotations

import json

import pytest

from calico.calculation.events import PolicyID
from calico.explain import world as world_module
from calico.explain.explain import explain
from calico.explain.flow import parse_headers, parse_party
from calico.explain.snapshot import Snapshot
from calico.explain.trace import Explanation
from calico.explain.world import Endpoint, World, resolve
from tests.unit.explain.world_helpers import HOST_ENDPOINT, gnp, snapshot, wep

WEB = wep("web", "198.18.0.2/32", labels="{app: web}", extra="  profiles: [team-blue]\n  serviceAccountName: sa1")
CLIENT = wep("client", "198.18.0.3/32", node="h2", ns="ns2", labels="{app: client}")
OTHER = wep("other", "198.18.0.4/32", ns="ns3", labels="{app: other}")
HOST = HOST_ENDPOINT
TEAM_BLUE = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: team-blue}
spec: {labelsToApply: {team: blue}}
"""


def _gnp(name: str, spec: str) -> str:
    return gnp(name, f"  order: 10\n{spec}")


def _np(name: str, ns: str, spec: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  order: 20
{spec}"""


DENY_22 = "  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}]\n  egress: [{action: Allow}]"
ALLOW_ALL = "  ingress: [{action: Allow}]\n  egress: [{action: Allow}]"
POLICIES = [
    _gnp("by-profile-label", "  selector: team == 'blue'\n" + DENY_22),
    _gnp("by-namespace", "  selector: all()\n  namespaceSelector: projectcalico.org/name == 'ns2'\n" + ALLOW_ALL),
    _gnp("hosts", "  selector: role == 'host'\n" + DENY_22),
    _gnp("by-account", "  selector: app == 'web'\n  serviceAccountSelector: projectcalico.org/name == 'sa1'\n"
         + ALLOW_ALL),
    _gnp("by-absence", "  selector: \"!has(app)\"\n" + ALLOW_ALL),
    _gnp("elsewhere", "  selector: app == 'other'\n" + DENY_22),
    _np("in-ns1", "ns1", "  selector: all()\n" + ALLOW_ALL),
    _np("in-ns3", "ns3", "  selector: all()\n  ingress: [{action: Deny}]\n  egress: [{action: Deny}]"),
    """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: staged-deny, namespace: ns1}
spec:
  selector: app == 'web'
  ingress: [{action: Deny}]
""",
]
FLOWS = [("ns2/client", "ns1/web", 22), ("ns2/client", "ns1/web", 80), ("ns1/web", "ns2/client", 443),
         ("ns2/client", "hep:h1-eth0", 22), ("ns2/client", "198.19.1.1", 80), ("198.18.9.9", "ns1/web", 80),
         ("ns3/other", "ns1/web", 22)]


def _run(snap: Snapshot, src: str, dst: str, port: int) -> Explanation:
    return explain(snap, parse_party(src, "--src"), parse_party(dst, "--dst"), parse_headers("tcp", port, None, None,
                                                                                              None))


def _every_policy_fed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(world_module, "_may_select", lambda *_: True)


@pytest.mark.parametrize(("src", "dst", "port"), FLOWS)
def test_the_same_explanation_as_with_every_policy_fed(monkeypatch: pytest.MonkeyPatch, src: str, dst: str,
                                                       port: int) -> None:
    snap = snapshot(WEB, CLIENT, OTHER, HOST, TEAM_BLUE, *POLICIES)
    filtered = _run(snap, src, dst, port).to_json()
    _every_policy_fed(monkeypatch)
    assert filtered == _run(snap, src, dst, port).to_json()


def test_only_policies_that_can_select_the_endpoints_are_fed() -> None:
    snap = snapshot(WEB, CLIENT, OTHER, HOST, TEAM_BLUE, *POLICIES)
    ends = [e for e in (_end(snap, "ns1/web"), _end(snap, "ns2/client")) if e is not None]
    w = World(snap, ends, ("198.18.0.2", "198.18.0.3"))
    candidates = [PolicyID("default", n) for n in ("by-profile-label", "by-namespace", "hosts",
                                                   "by-account", "by-absence", "elsewhere")]
    candidates += [PolicyID("default", "in-ns1", "ns1"), PolicyID("default", "in-ns3", "ns3")]
    fed = {pid.name for pid in candidates if w.graph.active_rules.policy_rules(pid) is not None}
    assert fed == {"by-profile-label", "by-namespace", "by-account", "in-ns1"}
    assert {pid.name for pid in w.graph.active_rules.active_policies()} == fed  # and each selects one of them


def _end(snap: Snapshot, name: str) -> Endpoint | None:
    return resolve(snap, parse_party(name, "--src"))


POLICY_KEY = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"


def _bad(snap: Snapshot, name: str, spec: object) -> None:
    snap.values[POLICY_KEY + name] = json.dumps({"kind": "GlobalNetworkPolicy", "apiVersion": "projectcalico.org/v3",
                                                 "metadata": {"name": name}, "spec": spec}).encode()


def test_what_is_wrong_with_a_policy_that_concerns_the_endpoints_stays_in_the_notes() -> None:
    snap = snapshot(WEB, CLIENT, TEAM_BLUE)
    _bad(snap, "bad-rule-web", {"selector": "app == 'web'", "ingress": [{"action": "Frob"}]})
    _bad(snap, "bad-selector", {"selector": "app ==="})  # cannot tell what it selects: named
    _bad(snap, "bad-type", {"selector": 5})
    snap.values[POLICY_KEY + "not-json"] = b"{"
    _bad(snap, "bad-rule-elsewhere", {"selector": "app == 'other'", "ingress": [{"action": "Frob"}]})
    notes = " ".join(_run(snap, "ns2/client", "ns1/web", 80).notes)
    for named in ("bad-rule-web", "bad-selector", "bad-type", "not-json"):
        assert f"GlobalNetworkPolicy {named} " in notes, named
    assert "bad-rule-elsewhere" not in notes  # could not apply to either endpoint, valid or not

"""Host endpoint stages in explanations: untracked (doNotTrack), preDNAT and applyOnForward, in the renderers'
order and with their semantics (`calico.dataplane.hostendpoints`): a stage's Allow skips the later host
endpoint stages, its Deny drops, nothing decided goes on; forwarded traffic meets only applyOnForward policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.explain.flow import parse_host_endpoint
from calico.explain.snapshot import Snapshot
from calico.explain.trace import Explanation
from tests.unit.explain.world_helpers import gnp, run, snapshot, wep

EXT = "198.19.9.9"
HEP = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1-eth0, labels: {role: host}}
spec: {node: h1, interfaceName: eth0, expectedIPs: [198.19.1.1]}
"""
WEB = wep("web", "198.18.0.2/32", labels="{app: web}",
          extra="  profiles: [open]\n  ipNATs: [{internalIP: 198.18.0.2, externalIP: 198.19.50.1}]")
OPEN = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec: {egress: [{action: Allow}], ingress: [{action: Allow}]}
"""


def host_gnp(name: str, body: str) -> str:
    return gnp(name, f"  selector: role == 'host'\n{body}")


DNT = host_gnp("dnt", """  doNotTrack: true
  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [9090]}}
  - {action: Pass, protocol: TCP, destination: {ports: [7070]}}
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
  - {action: Deny, protocol: TCP, destination: {ports: [5050]}}
  egress:
  - {action: Allow, protocol: TCP, source: {ports: [8080]}}""")
PRE_DNAT = host_gnp("pd", """  preDNAT: true
  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [6060]}}
  - {action: Deny, protocol: TCP, destination: {nets: [198.19.50.1/32], ports: [3030]}}
  - {action: Allow, protocol: TCP, destination: {ports: [5050, 5151]}}""")
FORWARD = host_gnp("fwd", """  applyOnForward: true
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8081, 3030]}}
  - {action: Deny, protocol: TCP, destination: {ports: [4040]}}""")
HOST_WEB = host_gnp("host-web", """  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [443]}}""")


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return snapshot(HEP, WEB, OPEN, DNT, PRE_DNAT, FORWARD, HOST_WEB)


def shape(e: Explanation) -> list[tuple[str, str, str, str]]:
    return [(s.kind, s.stage, s.endpoint, s.verdict) for s in e.enforced.stages]


def test_untracked_allow_skips_the_later_host_endpoint_stages(snap: Snapshot) -> None:
    e = run(snap, EXT, "hep:h1-eth0", port=8080)
    assert e.verdict == "allow"
    assert shape(e) == [("untracked", "ingress", "hep:h1-eth0", "allow"),
                        ("preDNAT", "ingress", "hep:h1-eth0", "allow"),
                        ("normal", "ingress", "hep:h1-eth0", "allow")]
    untracked, pre_dnat, normal = e.enforced.stages
    assert untracked.decided == "rule" and untracked.tiers[0].policies[0].name == "dnt"
    assert (pre_dnat.decided, normal.decided) == ("hep_allowed", "hep_allowed")
    assert "untracked ingress of hep:h1-eth0" in normal.reason
    assert any("not tracked" in n for n in e.notes)
    assert [s["kind"] for s in e.to_json()["stages"]] == ["untracked", "preDNAT", "normal"]


def test_untracked_deny_drops_first(snap: Snapshot) -> None:
    e = run(snap, EXT, "198.19.1.1", port=9090)  # the endpoint's address: to the host through its interface
    assert e.verdict == "deny"
    assert shape(e) == [("untracked", "ingress", "hep:h1-eth0", "deny")]
    assert e.enforced.reason.startswith("untracked ingress of hep:h1-eth0: denied by tier default, policy dnt")


def test_untracked_pass_and_no_match_go_on_to_normal_policy(snap: Snapshot) -> None:
    for port in (7070, 7071):  # Pass: the rest of the tier skipped; no match: the stage decides nothing
        e = run(snap, EXT, "hep:h1-eth0", port=port)
        assert shape(e) == [("untracked", "ingress", "hep:h1-eth0", "none"), ("preDNAT", "ingress", "hep:h1-eth0",
                                                                               "none"),
                            ("normal", "ingress", "hep:h1-eth0", "deny")]
        assert e.enforced.stages[2].decided == "tier_default"
    passed = run(snap, EXT, "hep:h1-eth0", port=7070).enforced.stages[0].tiers[0]
    assert passed.outcome == "pass"
    assert run(snap, EXT, "hep:h1-eth0", port=443).verdict == "allow"  # normal policy allows it


def test_failsafe_ports_go_through_the_stages(snap: Snapshot) -> None:
    e = run(snap, EXT, "hep:h1-eth0", port=22)
    assert shape(e) == [("untracked", "ingress", "hep:h1-eth0", "none"), ("preDNAT", "ingress", "hep:h1-eth0", "none"),
                        ("normal", "ingress", "hep:h1-eth0", "allow")]
    assert e.enforced.stages[2].decided == "failsafe" and not e.enforced.stages[0].tiers


def test_pre_dnat_deny_and_allow(snap: Snapshot) -> None:
    e = run(snap, EXT, "hep:h1-eth0", port=6060)
    assert shape(e)[-1] == ("preDNAT", "ingress", "hep:h1-eth0", "deny")
    e = run(snap, EXT, "hep:h1-eth0", port=5151)  # preDNAT Allow: normal policy (which would drop) skipped
    assert e.verdict == "allow" and e.enforced.stages[-1].decided == "hep_allowed"
    assert "preDNAT ingress of hep:h1-eth0" in e.enforced.stages[-1].reason


def test_untracked_deny_comes_before_a_pre_dnat_allow(snap: Snapshot) -> None:
    e = run(snap, EXT, "ns1/web", port=5050, via="hep:h1-eth0")
    assert shape(e) == [("untracked", "ingress", "hep:h1-eth0", "deny")]


def test_forwarded_to_a_workload_meets_apply_on_forward_then_the_workload(snap: Snapshot) -> None:
    e = run(snap, EXT, "ns1/web", port=8081, via="hep:h1-eth0")
    assert e.verdict == "allow"
    assert shape(e) == [("untracked", "ingress", "hep:h1-eth0", "none"), ("preDNAT", "ingress", "hep:h1-eth0", "none"),
                        ("forward", "ingress", "hep:h1-eth0", "allow"), ("normal", "ingress", "ns1/web", "allow")]
    assert [p.name for t in e.enforced.stages[2].tiers for p in t.policies] == ["fwd"]  # not host-web
    denied = run(snap, EXT, "ns1/web", port=4040, via="hep:h1-eth0")
    assert shape(denied)[-1] == ("forward", "ingress", "hep:h1-eth0", "deny")
    nothing = run(snap, EXT, "ns1/web", port=4041, via="hep:h1-eth0")  # the tier's default drops
    assert shape(nothing)[-1] == ("forward", "ingress", "hep:h1-eth0", "deny")
    assert nothing.enforced.stages[-1].decided == "tier_default"


def test_pre_dnat_allow_skips_apply_on_forward_but_not_the_workload(snap: Snapshot) -> None:
    e = run(snap, EXT, "ns1/web", port=5151, via="hep:h1-eth0")
    assert shape(e)[2:] == [("forward", "ingress", "hep:h1-eth0", "allow"), ("normal", "ingress", "ns1/web", "allow")]
    assert e.enforced.stages[2].decided == "hep_allowed"


def test_pre_dnat_sees_the_destination_before_dnat(snap: Snapshot) -> None:
    e = run(snap, EXT, "198.19.50.1", port=3030, via="hep:h1-eth0")  # the floating IP, DNATed after preDNAT
    assert shape(e)[-1] == ("preDNAT", "ingress", "hep:h1-eth0", "deny")
    e = run(snap, EXT, "198.18.0.2", port=3030, via="hep:h1-eth0")
    assert e.verdict == "allow"


def test_leaving_through_a_host_endpoint(snap: Snapshot) -> None:
    e = run(snap, "ns1/web", EXT, port=80, leaves_via="hep:h1-eth0")  # no applyOnForward egress: left alone
    assert shape(e) == [("normal", "egress", "ns1/web", "allow"), ("forward", "egress", "hep:h1-eth0", "allow")]
    assert "left alone" in e.enforced.stages[1].reason
    e = run(snap, EXT, EXT.replace("9.9", "9.8"), port=80, via="hep:h1-eth0")
    assert any("--leaves-via" in n for n in e.notes)


def test_untracked_egress_from_the_host(snap: Snapshot) -> None:
    e = run(snap, "hep:h1-eth0", EXT, port=40000, src_port=8080)  # a reply of an untracked flow
    assert shape(e) == [("untracked", "egress", "hep:h1-eth0", "allow"), ("normal", "egress", "hep:h1-eth0", "allow")]
    e = run(snap, "hep:h1-eth0", EXT, port=40000, src_port=8081)  # no egress policy, no profile
    assert shape(e) == [("untracked", "egress", "hep:h1-eth0", "none"), ("normal", "egress", "hep:h1-eth0", "deny")]


def test_stages_of_a_host_endpoint_without_such_policies_are_not_shown() -> None:
    snap = snapshot(HEP, WEB, OPEN, HOST_WEB)
    e = run(snap, EXT, "ns1/web", port=80, via="hep:h1-eth0")
    assert shape(e) == [("forward", "ingress", "hep:h1-eth0", "allow"), ("normal", "ingress", "ns1/web", "allow")]


def test_impossible_paths_are_refused(snap: Snapshot) -> None:
    with pytest.raises(ValueError, match=r"--via: .*not hep:NAME"):
        parse_host_endpoint("ns1/web", "--via")
    with pytest.raises(ValueError, match="--via: hep:h1-eth0 is the host itself"):
        run(snap, "hep:h1-eth0", "ns1/web", via="hep:h1-eth0")
    with pytest.raises(ValueError, match="--leaves-via: hep:h1-eth0 is the host itself"):
        run(snap, EXT, "hep:h1-eth0", leaves_via="hep:h1-eth0")
    with pytest.raises(LookupError, match="no HostEndpoint nope"):
        run(snap, EXT, "ns1/web", via="hep:nope")


async def test_the_command_line_options(snap: Snapshot, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--via and --leaves-via through the shared CLI, over a real (embedded) datastore: JSON and exit codes."""
    import json

    from calico.datastore.embedded import EmbeddedKV
    from calico.explain import cli

    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        for key, value in snap.values.items():
            await kv.put(key, value)
        opts = cli.FlowOptions("tcp", 4040, None, None, None, "json", False, via="hep:h1-eth0")
        assert await cli.run(kv, EXT, "ns1/web", opts) == cli.EXIT_DENY
        out = json.loads(capsys.readouterr().out)
        assert out["verdict"] == "deny" and [s["kind"] for s in out["stages"]] == ["untracked", "preDNAT", "forward"]
        opts = cli.FlowOptions("tcp", 80, None, None, None, "tree", False, leaves_via="hep:h1-eth0")
        assert await cli.run(kv, "ns1/web", EXT, opts) == cli.EXIT_ALLOW
        assert "forward egress of hep:h1-eth0" in capsys.readouterr().out
        opts = cli.FlowOptions("tcp", 80, None, None, None, "tree", False, via="ns1/web")
        assert await cli.run(kv, EXT, "ns1/web", opts) == cli.EXIT_ERROR
        assert "--via: 'ns1/web' is not hep:NAME" in capsys.readouterr().err
        opts = cli.FlowOptions("tcp", 80, None, None, None, "tree", False, via="hep:h1-eth0")
        assert await cli.run(kv, "hep:h1-eth0", EXT, opts) == cli.EXIT_ERROR
    finally:
        await kv.close()

"""Full-stack functional verification: calicoctl -> datastore -> calico-felix -> kernel -> real packets.

One lab per (dataplane, datastore) case, shared by the tests of this module in file order: the tests walk one
story (no policy, then policy, relabelling, policy deletion, profiles, workload deletion, the matrix) and each
leaves the policy state it found, so a failure in one does not cascade into the next more than necessary.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from calico.lab.probe import probe
from tests.lab.conftest import Lab, LabFactory

pytestmark = pytest.mark.heavy

# Felix programs asynchronously: how long a datastore change may take to reach the kernel.
CONVERGE = 10.0

# Egress from every app is allowed by a global policy, so that ingress policy on `web` is the only thing deciding
# whether a flow to it passes (an endpoint with no applicable policy drops everything, both ways).
GNP_EGRESS = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: apps-egress
spec:
  selector: has(app)
  types:
  - Egress
  egress:
  - action: Allow
"""

NP_WEB = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web-from-client
  namespace: default
spec:
  selector: app == 'web'
  types:
  - Ingress
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'client'
    destination:
      ports:
      - 8080
"""

NP_WEB_ICMP = NP_WEB + """\
  - action: Allow
    protocol: ICMP
    source:
      selector: app == 'client'
  - action: Allow
    protocol: ICMPv6
    source:
      selector: app == 'client'
"""

PROFILE_OPEN = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: open-8080
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports:
      - 8080
  egress:
  - action: Allow
"""

CASES = [("nftables", "embedded"), ("iptables", "embedded"), ("nftables", "etcd")]


@pytest.fixture(scope="module", params=CASES, ids=[f"{dp}-{ds}" for dp, ds in CASES])
def world(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Iterator[Lab]:
    """A one-host lab with web, client and other workloads; brought down before the next case starts."""
    lab = lab_factory(*request.param)
    try:
        lab.add_workload("web", "app=web")
        lab.add_workload("client", "app=client")
        lab.add_workload("other", "app=other")
        yield lab
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None)


def endpoint(lab: Lab, wl: str) -> str:
    return lab.state.workloads[wl].endpoint_name


def test_no_policy_blocks_everything(world: Lab) -> None:
    assert not world.can("client", "web")
    assert not world.can("client", "web", ipv6=True)
    assert not world.can("client", "web", proto="icmp")
    assert not world.can("web", "client", proto="udp")


def test_policy_allows_only_the_selected_source(world: Lab) -> None:
    world.apply(GNP_EGRESS + "---\n" + NP_WEB)
    world.wait_for(lambda: world.can("client", "web"), CONVERGE, "client -> web tcp:8080 allowed")
    # The CLI's view agrees with the in-process probe (exit 0 allowed, 1 blocked).
    assert world.cli("probe", "client", "web").returncode == 0
    assert world.cli("probe", "other", "web", "--timeout", "0.5", ok=False).returncode == 1
    assert world.can("client", "web", ipv6=True)
    assert not world.can("other", "web")
    assert not world.can("other", "web", ipv6=True)
    assert not world.can("client", "web", port=8081)  # only the allowed port
    assert not world.can("client", "web", proto="udp")  # only the allowed protocol
    assert not world.can("client", "web", proto="icmp")  # ICMP is blocked unless a rule allows it
    assert not world.can("client", "web", proto="icmp", ipv6=True)
    assert not world.can("web", "client")  # client has no ingress policy
    # Allow ICMP too: both families open, still only from client.
    world.apply(NP_WEB_ICMP)
    world.wait_for(lambda: world.can("client", "web", proto="icmp"), CONVERGE, "client -> web ICMP allowed")
    assert world.can("client", "web", proto="icmp", ipv6=True)
    assert not world.can("other", "web", proto="icmp")
    world.apply(NP_WEB)
    world.wait_for(lambda: not world.can("client", "web", proto="icmp"), CONVERGE, "ICMP closed again")


def test_relabel_moves_endpoint_in_and_out_of_the_allowed_set(world: Lab) -> None:
    world.apply(GNP_EGRESS + "---\n" + NP_WEB)
    ep = endpoint(world, "other")
    world.ctl("label", "workloadendpoint", ep, "app=client", "--overwrite", "-n", "default")
    world.wait_for(lambda: world.can("other", "web"), CONVERGE, "other (now app=client) -> web allowed")
    assert world.can("other", "web", ipv6=True)
    world.ctl("label", "workloadendpoint", ep, "app=other", "--overwrite", "-n", "default")
    world.wait_for(lambda: not world.can("other", "web"), CONVERGE, "other (app=other again) -> web blocked")
    # Dropping the label altogether also takes it out of the GNP's egress selector.
    world.ctl("label", "workloadendpoint", ep, "--remove", "app", "-n", "default")
    world.ctl("label", "workloadendpoint", ep, "app=client", "-n", "default")
    world.wait_for(lambda: world.can("other", "web"), CONVERGE, "other relabelled app=client -> web allowed")
    world.ctl("label", "workloadendpoint", ep, "app=other", "--overwrite", "-n", "default")
    world.wait_for(lambda: not world.can("other", "web"), CONVERGE, "other back out")
    assert world.can("client", "web")  # the untouched endpoint was never disturbed


def test_deleting_the_policy_closes_it_again(world: Lab) -> None:
    world.apply(GNP_EGRESS + "---\n" + NP_WEB)
    world.wait_for(lambda: world.can("client", "web"), CONVERGE, "open before delete")
    world.ctl("delete", "networkpolicy", "web-from-client", "-n", "default")
    world.wait_for(lambda: not world.can("client", "web"), CONVERGE, "client -> web blocked after delete")
    assert not world.can("client", "web", ipv6=True)
    world.ctl("delete", "globalnetworkpolicy", "apps-egress")


def test_profile_allows_by_fall_through(world: Lab) -> None:
    world.apply(PROFILE_OPEN)
    world.add_workload("pa", "", "--profile", "open-8080")
    world.add_workload("pb", "", "--profile", "open-8080")
    world.wait_for(lambda: world.can("pa", "pb"), CONVERGE, "pa -> pb allowed by profile")
    assert world.can("pb", "pa", ipv6=True)
    assert not world.can("pa", "pb", port=9090)  # the profile opens 8080 only
    assert not world.can("client", "pb")  # client has no egress allowed
    # A policy that applies to pb ends its evaluation before profiles: no fall-through, default deny.
    world.apply(NP_WEB.replace("selector: app == 'web'", "selector: '!has(app)'").replace("web-from-client", "lock-pb"))
    world.wait_for(lambda: not world.can("pa", "pb"), CONVERGE, "policy with no match shadows the profile")
    world.ctl("delete", "networkpolicy", "lock-pb", "-n", "default")
    world.wait_for(lambda: world.can("pa", "pb"), CONVERGE, "profile in force again")


def _ruleset(lab: Lab) -> str:
    if lab.dataplane == "nftables":
        return lab.in_host("nft", "list", "ruleset").stdout
    return lab.in_host("iptables-save").stdout + lab.in_host("ip6tables-save").stdout + \
        lab.in_host("ipset", "list").stdout


def test_workload_del_removes_its_access(world: Lab) -> None:
    world.apply(PROFILE_OPEN)
    world.add_workload("gone", "", "--profile", "open-8080")
    if "pa" not in world.state.workloads:
        world.add_workload("pa", "", "--profile", "open-8080")
    world.wait_for(lambda: world.can("pa", "gone"), CONVERGE, "pa -> gone allowed")
    wl = world.state.workloads["gone"]
    world.wait_for(lambda: wl.iface in _ruleset(world), CONVERGE, "endpoint programmed")
    world.cli("workload", "del", "gone")
    assert "gone" not in world.state.workloads

    def forgotten() -> bool:
        rules = _ruleset(world)
        return wl.iface not in rules and wl.ipv4 not in rules and wl.ipv6 not in rules

    world.wait_for(forgotten, CONVERGE, "deleted endpoint's interface and addresses gone from the dataplane")
    assert world.can("pb", "pa")  # the others keep working


def _parse_matrix(text: str) -> dict[tuple[str, str], str]:
    rows = [[c.strip() for c in re.split(r"[│┃|]", line)[1:-1]] for line in text.splitlines()
            if line.count("│") + line.count("┃") >= 3]
    header, *body = rows
    cols = [c.split("@")[0] for c in header[1:]]  # "web@h1": the workload and its host
    return {(r[0].split("@")[0], c): v for r in body for c, v in zip(cols, r[1:], strict=True)}


def test_matrix_prints_the_expected_table(world: Lab) -> None:
    world.apply(GNP_EGRESS + "---\n" + NP_WEB)
    world.wait_for(lambda: world.can("client", "web"), CONVERGE, "policy in force")
    for wl in [w for w in world.state.workloads if w not in ("web", "client", "other", "pa")]:
        world.cli("workload", "del", wl)  # keep the table (and its blocked probes) small
    out = world.cli("matrix", "--timeout", "0.3").stdout
    cells = _parse_matrix(out)
    names = ["client", "other", "pa", "web"]
    expected = {(s, t): "-" if s == t else "x" for s in names for t in names}
    expected[("client", "web")] = "ok"  # NetworkPolicy
    expected[("client", "pa")] = expected[("other", "pa")] = expected[("web", "pa")] = "ok"  # pa's profile
    assert cells == expected, out


HOST_POLICY = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h1-uplink
  labels:
    role: lab-host
spec:
  node: h1
  expectedIPs: ["{ip}"]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: host-untracked
spec:
  selector: role == 'lab-host'
  doNotTrack: true
  applyOnForward: true
  order: 10
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [7777]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: host-pre-dnat
spec:
  selector: role == 'lab-host'
  preDNAT: true
  applyOnForward: true
  order: 10
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [7778]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: host-normal
spec:
  selector: role == 'lab-host'
  order: 20
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [7779]
  - action: Allow
  egress:
  - action: Allow
"""


def test_host_endpoint_policy_from_the_datastore(world: Lab) -> None:
    """calicoctl → datastore → felix's graph → kernel: a HostEndpoint found by its expected IP (no interfaceName)
    with doNotTrack, preDNAT and normal policy, probed from the fabric into the host."""
    st = world.state
    host_ip = st.hosts["h1"].addr4.split("/")[0]

    def from_fabric(port: int) -> bool:
        return probe(world.state.fabric_ns, world.host_ns(), host_ip, "tcp", port, 0.5).ok

    manifest = HOST_POLICY.replace("{ip}", host_ip)
    assert all(from_fabric(p) for p in (7777, 7778, 7779, 7780))  # no host endpoint: host traffic untouched
    world.apply(manifest)
    try:
        world.wait_for(lambda: not from_fabric(7779), CONVERGE, "normal host endpoint policy in force")
        world.wait_for(lambda: not from_fabric(7777), CONVERGE, "doNotTrack policy in force")
        world.wait_for(lambda: not from_fabric(7778), CONVERGE, "preDNAT policy in force")
        assert from_fabric(7780)  # allowed by the normal policy
        assert world.readiness() == 200  # felix still talks to its datastore (failsafe ports)
    finally:
        world.delete(manifest)
    world.wait_for(lambda: all(from_fabric(p) for p in (7777, 7778, 7779)), CONVERGE, "host endpoint gone")


STAGED_DENY_WEB = """\
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata:
  name: web-from-client
  namespace: default
spec:
  stagedAction: Set
  selector: app == 'web'
  types:
  - Ingress
  ingress:
  - action: Deny
"""


def test_explain_agrees_with_probes_and_a_staged_deny_drops_nothing(world: Lab) -> None:
    """`calico-lab explain` (the datastore's answer) against real probes; a staged deny shows as pending only."""
    world.apply(GNP_EGRESS + "---\n" + NP_WEB)
    world.wait_for(lambda: world.can("client", "web"), CONVERGE, "client -> web allowed")
    flows = [("client", "web", "tcp", 8080), ("other", "web", "tcp", 8080), ("client", "web", "tcp", 8081),
             ("client", "web", "udp", 8080), ("client", "web", "icmp", 0), ("web", "client", "tcp", 8080)]
    for src, dst, proto, port in flows:
        for ipv6 in (False, True):
            opts = ["--protocol", proto] + (["--icmp-type", "128" if ipv6 else "8"] if proto == "icmp"
                                           else ["--port", str(port)])
            told = world.cli("explain", src, dst, *opts, *(["--ipv6"] if ipv6 else []), ok=None)
            assert told.returncode in (0, 1), told.stderr
            assert (told.returncode == 0) == world.can(src, dst, proto, port, ipv6=ipv6), (src, dst, proto, ipv6,
                                                                                            told.stdout)
    denied = world.cli("explain", "other", "web", "--port", "8080", ok=False)
    assert "ingress of default/" in denied.stdout and "policies applied but none decided" in denied.stdout

    def counted() -> int:  # what the kernel counted for the rule that allows client -> web, from Felix's status
        told = json.loads(world.cli("explain", "client", "web", "--port", "8080", "--counters", "-o", "json").stdout)
        [policy] = [p for t in told["stages"][1]["tiers"] for p in t["policies"] if p["outcome"] == "allow"]
        assert policy["counted_on"] == ["h1"]
        return int(policy["rules"][policy["decided_by"]]["packets"])

    before = counted()
    assert world.can("client", "web")
    world.wait_for(lambda: counted() > before, CONVERGE, "the allowing rule's counter grew (Felix's status)")

    # The hosts' flow logs name the policy that decided (the lab flushes them every 2 s).
    web = "default/web"  # flow logs name a workload (its pod), not its endpoint

    def logged(*filters: str) -> list[dict]:
        out = world.cli("flows", "--endpoint", web, "--last", "0", "-o", "json", *filters).stdout
        return [json.loads(line) for line in out.splitlines()]

    world.wait_for(lambda: any(r["source_ip"] == world.state.workloads["other"].ipv4 for r in logged("--action",
                                                                                                   "deny")),
                   CONVERGE, "a denied flow other -> web in the flow logs")
    denied = [r for r in logged("--action", "deny") if r["source_ip"] == world.state.workloads["other"].ipv4]
    assert denied[-1]["policies"][-1]["kind"] == "tier_default" and denied[-1]["dest_port"] == 8080

    world.apply(STAGED_DENY_WEB)
    try:
        told = world.cli("explain", "client", "web", "--port", "8080", "-o", "json")
        verdict = json.loads(told.stdout)
        assert (verdict["verdict"], verdict["pendingVerdict"]) == ("allow", "deny")
        assert "web-from-client rule 0" in verdict["pendingReason"]
        time.sleep(1.0)  # Felix had its chance to (wrongly) enforce it
        assert world.can("client", "web") and world.can("client", "web", ipv6=True)
        # ... and its flow logs say what the staged policy would do: pending deny, by it.
        world.wait_for(lambda: any(r.get("pending_action") == "deny" for r in logged("--action", "allow")),
                       CONVERGE, "a pending deny in the flow logs")
        pending = [r for r in logged("--action", "allow") if r.get("pending_action") == "deny"][-1]
        assert pending["pending_policies"][-1] == {"direction": "ingress", "kind": "policy", "tier": "default",
                                                   "policy": "default/web-from-client", "rule": 0, "action": "deny"}
    finally:
        world.ctl("delete", "stagednetworkpolicy", "web-from-client", "-n", "default")
    world.ctl("delete", "networkpolicy", "web-from-client", "-n", "default")
    world.ctl("delete", "globalnetworkpolicy", "apps-egress")

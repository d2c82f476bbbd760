"""Flows between a workload and its own host, as the renderers handle them (`dataplane.tohost`, the input chain's
wl-to-host and the output chain): DHCP / DNS / ND accepted before the workload's egress, then its egress policy,
then DefaultEndpointToHostAction (FelixConfiguration node.<name> over default; Drop unless set); the host's own
traffic to its workloads is accepted with no policy. A workload on another node meets the host endpoint's
ingress policy as before."""

from __future__ import annotations

from calico.explain.snapshot import Snapshot
from tests.unit.explain.world_helpers import HOST_ENDPOINT, OPEN_PROFILE, run, snapshot, wep

HEP = HOST_ENDPOINT
OPEN = OPEN_PROFILE
HOST_IN = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-in}
spec: {selector: role == 'host', ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]}
"""
LOCAL = wep("local", "198.18.0.2/32", extra="  profiles: [open]")
CLOSED = wep("closed", "198.18.0.3/32")  # no profile, no policy: its egress and ingress drop
REMOTE = wep("remote", "198.18.1.2/32", node="h2", extra="  profiles: [open]")


def felix_config(name: str, action: str) -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: {name}}}
spec: {{defaultEndpointToHostAction: {action}}}
"""


def snap(*extra: str) -> Snapshot:
    return snapshot(HEP, OPEN, HOST_IN, LOCAL, CLOSED, REMOTE, *extra)


def test_a_workload_to_its_own_host_is_dropped_after_its_egress_by_default() -> None:
    e = run(snap(), "ns1/local", "hep:h1-eth0", port=8080)
    assert e.verdict == "deny"
    assert [(s.kind, s.stage, s.verdict) for s in e.enforced.stages] == [
        ("normal", "egress", "allow"), ("to host", "ingress", "deny")]
    assert e.enforced.stages[1].decided == "endpoint_to_host"
    assert "DefaultEndpointToHostAction Drop" in e.enforced.reason
    assert any("one node" in n for n in e.notes)


def test_the_endpoint_to_host_action_comes_from_felix_configuration_node_first() -> None:
    e = run(snap(felix_config("default", "Accept")), "ns1/local", "hep:h1-eth0", port=8080)
    assert e.verdict == "allow" and "Accept" in e.enforced.reason
    e = run(snap(felix_config("default", "Accept"), felix_config("node.h1", "Drop")), "ns1/local", "hep:h1-eth0",
            port=8080)
    assert e.verdict == "deny"
    e = run(snap(felix_config("node.h1", "Return")), "ns1/local", "hep:h1-eth0", port=8080)
    assert e.verdict == "allow" and "Return" in e.enforced.reason
    # The workload's own egress still comes first.
    e = run(snap(felix_config("default", "Accept")), "ns1/closed", "hep:h1-eth0", port=8080)
    assert e.verdict == "deny" and e.enforced.stages[-1].kind == "normal"


def test_dns_dhcp_and_nd_to_the_host_are_accepted_before_any_policy() -> None:
    for protocol, port in (("udp", 53), ("tcp", 53), ("udp", 67)):
        e = run(snap(), "ns1/closed", "hep:h1-eth0", protocol=protocol, port=port)
        assert e.verdict == "allow", (protocol, port)
        assert [s.kind for s in e.enforced.stages] == ["to host"]
    assert run(snap(), "ns1/closed", "hep:h1-eth0", protocol="udp", port=546).verdict == "deny"  # DHCPv6 is v6


def test_the_host_to_its_own_workload_is_accepted_without_policy() -> None:
    e = run(snap(), "hep:h1-eth0", "ns1/closed", port=8080)
    assert e.verdict == "allow"
    assert [(s.kind, s.decided) for s in e.enforced.stages] == [("from host", "from_host")]


def test_a_workload_on_another_node_meets_the_host_endpoint_policy() -> None:
    assert run(snap(), "ns1/remote", "hep:h1-eth0", port=8080).verdict == "allow"
    e = run(snap(), "ns1/remote", "hep:h1-eth0", port=9090)
    assert e.verdict == "deny"
    assert [s.kind for s in e.enforced.stages] == ["normal", "normal"]

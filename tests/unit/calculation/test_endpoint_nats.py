"""A workload's `ipNATs` (floating IPs) reach the dataplane with its endpoint update, split by family; a remote
endpoint's never do; their addresses are not IP set members (policy sees the internal address)."""

from __future__ import annotations

from calico.calculation.events import NATInfo, WorkloadEndpointID, WorkloadEndpointUpdate
from tests.unit.calculation.builders import HOST, Feeder, allow, gnp, wep

W1 = WorkloadEndpointID("ns1", "w1")
NATS = [{"internalIP": "10.0.0.1", "externalIP": "198.19.250.5"},
        {"internalIP": "fd00:1::1", "externalIP": "fd00:5:0::5"},  # not canonical: canonical on the way in
        {"internalIP": "10.0.0.1", "externalIP": "198.19.250.6"}]


def local(f: Feeder) -> WorkloadEndpointUpdate:
    return f.dp.weps[W1]


def test_nats_ride_on_the_endpoint_update_by_family() -> None:
    f = Feeder()
    f.put(wep("w1", ips=["10.0.0.1", "fd00:1::1"], ipNATs=NATS)).flush()
    ep = local(f)
    assert ep.ipv4_nats == (NATInfo("198.19.250.5", "10.0.0.1"), NATInfo("198.19.250.6", "10.0.0.1"))
    assert ep.ipv6_nats == (NATInfo("fd00:5::5", "fd00:1::1"),)
    assert ep.ipv4_nets == ("10.0.0.1/32",)  # the floating IPs are routed by the dataplane, not addresses here

    # Dropping one NAT is an endpoint update; dropping all leaves the endpoint without any.
    events = f.put(wep("w1", ips=["10.0.0.1", "fd00:1::1"], ipNATs=NATS[:1])).flush()
    assert [type(e) for e in events] == [WorkloadEndpointUpdate]
    assert local(f).ipv4_nats == (NATInfo("198.19.250.5", "10.0.0.1"),) and local(f).ipv6_nats == ()
    f.put(wep("w1", ips=["10.0.0.1", "fd00:1::1"])).flush()
    assert local(f).ipv4_nats == local(f).ipv6_nats == ()


def test_remote_nats_stay_remote_and_are_not_set_members() -> None:
    f = Feeder()
    f.put(
        wep("w1", labels={"app": "web"}),
        wep("r1", node="n2", labels={"app": "web"}, ips=["10.1.0.1"],
            ipNATs=[{"internalIP": "10.1.0.1", "externalIP": "198.19.250.7"}]),
        gnp("p1", selector="app == 'web'", ingress=[allow(source={"selector": "app == 'web'"})]),
    )
    f.flush()
    assert set(f.dp.weps) == {W1} and HOST != "n2"
    set_id = f.dp.policy_rules("p1", "default", None).inbound[0].src_ip_set_ids[0]
    assert f.dp.set_members(set_id) == {"10.0.0.1/32", "10.1.0.1/32"}  # no 198.19.250.7


def test_a_bad_nat_removes_the_endpoint() -> None:
    f = Feeder()
    f.put(wep("w1", ipNATs=NATS[:1])).flush()
    assert W1 in f.dp.weps
    # internalIP must be one of the endpoint's addresses: the resource is refused, so the endpoint goes (fail closed).
    f.put(wep("w1", ipNATs=[{"internalIP": "10.9.9.9", "externalIP": "198.19.250.5"}])).flush()
    assert W1 not in f.dp.weps

"""Encapsulation and egress across hosts: VXLAN CrossSubnet (native within a subnet, encapsulated across, proved
by the counters of the device the packets used), VXLAN Always after a live pool change, and natOutgoing (the
outside world sees the host's address; other pools' workloads see the workload's own).

Hosts h1 and h3 share subnet 1, h2 sits in subnet 2 behind the router, which knows nothing of workload addresses:
only VXLAN (Felix's routes through `vxlan.calico`) gets traffic across.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from calico.lab import plan
from calico.lab.probe import probe
from tests.lab.conftest import Lab, LabFactory

pytestmark = pytest.mark.heavy

OPEN = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: kns.default
spec:
  ingress:
  - action: Allow
  egress:
  - action: Allow
"""


def vxlan_tx(lab: Lab, host: str, dev: str = "vxlan.calico") -> int:
    """Packets the host has sent through its VXLAN device."""
    out = lab.in_host("ip", "-s", "-j", "link", "show", dev, host=host).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def route(lab: Lab, host: str, dst: str) -> str:
    return lab.in_host("ip", "route", "get", dst, host=host).stdout


def reach(lab: Lab, src: str, dst: str, ipv6: bool = False) -> bool:
    return lab.can(src, dst, ipv6=ipv6, timeout=1.0)


@pytest.fixture(scope="module")
def crosssubnet(lab_factory: LabFactory) -> Iterator[Lab]:
    lab = lab_factory("nftables", "embedded", "--hosts", "3", "--subnets", "2", "--encap", "vxlan-crosssubnet")
    try:
        lab.apply(OPEN)
        for i in (1, 2, 3):
            lab.cli("workload", "add", f"a{i}", "--host", f"h{i}", "--profile", "kns.default")
        lab.cli("wait", "--timeout", "45", timeout=90)
        yield lab
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None)


def test_crosssubnet_is_native_within_a_subnet_and_vxlan_across(crosssubnet: Lab) -> None:
    lab = crosssubnet
    st = lab.state
    a2, a3 = st.workloads["a2"], st.workloads["a3"]
    assert "dev vxlan.calico" in route(lab, "h1", a2.ipv4)  # h2: the other subnet
    assert "dev vxlan.calico" not in route(lab, "h1", a3.ipv4)  # h3: the same subnet, routed natively
    assert f"via {st.hosts['h3'].addr4.split('/')[0]} dev eth0" in route(lab, "h1", a3.ipv4)
    before = vxlan_tx(lab, "h1")
    assert reach(lab, "a1", "a3") and reach(lab, "a3", "a1")
    assert vxlan_tx(lab, "h1") == before, "same-subnet traffic went through vxlan.calico"
    assert reach(lab, "a1", "a2") and reach(lab, "a2", "a1")
    assert vxlan_tx(lab, "h1") > before, "cross-subnet traffic did not use vxlan.calico"
    before6 = vxlan_tx(lab, "h1", "vxlan-v6.calico")
    assert reach(lab, "a1", "a2", ipv6=True) and reach(lab, "a3", "a2", ipv6=True)
    assert vxlan_tx(lab, "h1", "vxlan-v6.calico") > before6
    # The device and workload MTUs leave room for the encapsulation.
    mtu = json.loads(lab.in_host("ip", "-j", "link", "show", "vxlan.calico", host="h1").stdout)[0]["mtu"]
    assert mtu == 1450
    wl_mtu = json.loads(lab.in_host("ip", "-j", "link", "show", st.workloads["a1"].iface, host="h1").stdout)[0]
    assert wl_mtu["mtu"] == plan.workload_mtu("vxlan-crosssubnet")


def test_vxlan_always_after_a_live_pool_change(crosssubnet: Lab) -> None:
    lab = crosssubnet
    a3 = lab.state.workloads["a3"]
    lab.ctl("patch", "ippool", "default-ipv4-ippool", "-p", '{"spec": {"vxlanMode": "Always"}}')
    try:
        lab.wait_for(lambda: "dev vxlan.calico" in route(lab, "h1", a3.ipv4), 15, "h3's block moved to vxlan")
        before = vxlan_tx(lab, "h1")
        assert reach(lab, "a1", "a3")
        assert vxlan_tx(lab, "h1") > before
    finally:
        lab.ctl("patch", "ippool", "default-ipv4-ippool", "-p", '{"spec": {"vxlanMode": "CrossSubnet"}}')
    lab.wait_for(lambda: "dev vxlan.calico" not in route(lab, "h1", a3.ipv4), 15, "back to native")
    assert reach(lab, "a1", "a3")


def test_nat_outgoing_hides_workloads_from_the_outside_only(crosssubnet: Lab) -> None:
    lab = crosssubnet
    st = lab.state
    a1, a2 = st.workloads["a1"], st.workloads["a2"]
    out = probe(a1.netns, st.outside_ns, plan.OUTSIDE4, "tcp", 8080, 1.0)
    assert out.ok and out.seen_from == st.hosts["h1"].addr4.split("/")[0], out
    inside = probe(a1.netns, a2.netns, a2.ipv4, "tcp", 8080, 1.0)
    assert inside.ok and inside.seen_from == a1.ipv4, inside  # another pool workload: no NAT
    lab.ctl("patch", "ippool", "default-ipv4-ippool", "-p", '{"spec": {"natOutgoing": false}}')
    try:
        # The router has no route back to workload addresses: without NAT the outside cannot answer.
        lab.wait_for(lambda: not probe(a1.netns, st.outside_ns, plan.OUTSIDE4, "tcp", 8080, 0.5).ok, 15,
                     "natOutgoing off: the outside unreachable")
    finally:
        lab.ctl("patch", "ippool", "default-ipv4-ippool", "-p", '{"spec": {"natOutgoing": true}}')
    lab.wait_for(lambda: probe(a1.netns, st.outside_ns, plan.OUTSIDE4, "tcp", 8080, 0.5).ok, 15, "NAT back")

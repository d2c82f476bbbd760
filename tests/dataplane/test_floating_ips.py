"""Floating IPs (WorkloadEndpoint ipNATs) and the OpenStack metadata DNAT against the real kernel, on nftables and
on iptables (nf_tables and legacy flavours).

Hosts h1 and h2 on one fabric subnet and an "outside" namespace in no pool (tests/helpers/hosts.py); w1 on h1
has the floating IPs FIP4 / FIP6 from a floating IP pool (an IPPool the operator creates for them, disabled so
IPAM never hands them out); w2 on h2 has none. Felix's driver (`create_driver`) runs in each host's namespace,
fed the events the calculation graph would send. No BIRD here: the routes it would import (the floating IPs
via h1 on h2 and on the fabric router; w2's address via h2 on h1) are added by hand, after checking that Felix
installed the kernel route BIRD exports (protocol 80 on w1's interface; tests/bgp covers the export itself).
Traffic is real TCP: a connection that completes proves the replies were un-NATed on their way back.
Run under the shared lock:
    flock /tmp/calico-netns.lock .venv/bin/python -m pytest tests/dataplane/test_floating_ips.py
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from calico.calculation import events as ev
from calico.dataplane.config import MetadataTarget
from tests.helpers.hosts import Drivers, Fabric, Host, Workload, sh
from tests.helpers.network_events import ALLOW_PROFILE, pool, workload

pytestmark = pytest.mark.heavy

POOL4, POOL6 = "198.18.0.0/16", "fd00:1::/48"
FIP_POOL4, FIP_POOL6 = "198.19.250.0/24", "fd00:5::/64"
FIP4, FIP6 = "198.19.250.10", "fd00:5::10"
PORT, CLOSED = 8080, 9090
BACKENDS = pytest.mark.parametrize(
    "backend", [{"backend": "nftables"}, {"backend": "iptables", "iptables_flavour": "nft"},
                {"backend": "iptables", "iptables_flavour": "legacy"}], ids=["nftables", "iptables-nft",
                                                                             "iptables-legacy"])


def _require(backend: dict[str, str]) -> None:
    for tool in ("conntrack",) + ((f"iptables-{backend['iptables_flavour']}-restore", "ipset")
                                 if backend["backend"] == "iptables" else ()):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")


def floating_pool(cidr: str) -> ev.IPPoolUpdate:
    return dataclasses.replace(pool(cidr), disabled=True)


# w1's policy names its *internal* addresses: it can only match because the DNAT comes before the filter.
def w1_profile(wl: Workload) -> ev.ProfileUpdate:
    assert wl.ipv6 is not None
    inbound = ev.RenderedRule("Allow", "web", protocol="TCP", dst_nets=(f"{wl.ipv4}/32", f"{wl.ipv6}/128"),
                              dst_ports=((PORT, PORT),))
    return ev.ProfileUpdate("web", (inbound,), (ev.RenderedRule("Allow", "out"),))


def w1_endpoint(wl: Workload, nats: bool = True) -> ev.WorkloadEndpointUpdate:
    ep = dataclasses.replace(workload(wl.name, wl.iface, wl.ipv4, wl.ipv6), profile_ids=("web",))
    if not nats:
        return ep
    return dataclasses.replace(ep, ipv4_nats=(ev.NATInfo(FIP4, wl.ipv4),), ipv6_nats=(ev.NATInfo(FIP6, str(wl.ipv6)),))


def proto80(ns: str, fam: str) -> str:
    return sh("ip", "-n", ns, fam, "route", "show", "proto", "80")


async def two_hosts(fab: Fabric, drivers: Drivers, backend: dict[str, str]
                    ) -> tuple[Host, Host, Workload, Workload]:
    """h1 (w1, floating IPs), h2 (w2) and outside; returns h1, outside, w1, w2."""
    _require(backend)
    h1, h2, out = fab.add_host("h1", 1, 1), fab.add_host("h2", 1, 2), fab.add_outside()
    w1 = fab.add_workload(h1, "w1", "198.18.1.10", "fd00:1:0:1::10")
    w2 = fab.add_workload(h2, "w2", "198.18.2.10")
    pools = [pool(POOL4, nat=True), pool(POOL6, nat=True), floating_pool(FIP_POOL4), floating_pool(FIP_POOL6)]
    d1 = await drivers.start(h1, **backend)
    await d1.apply([*pools, w1_profile(w1), w1_endpoint(w1), ev.InSync()])
    d2 = await drivers.start(h2, **backend)
    await d2.apply([*pools, ALLOW_PROFILE, workload(w2.name, w2.iface, w2.ipv4), ev.InSync()])
    # Felix routes the floating IPs to w1's interface, as it routes w1's own addresses (BIRD exports these).
    assert f"{FIP4} dev {w1.iface} scope link" in proto80(h1.netns, "-4")
    assert f"{FIP6} dev {w1.iface}" in proto80(h1.netns, "-6")
    # What BIRD would import elsewhere: the floating IPs via h1, w2 via h2.
    for ns in (h2.netns, fab.netns):
        sh("ip", "-n", ns, "route", "add", FIP4, "via", h1.ipv4)
        sh("ip", "-n", ns, "-6", "route", "add", FIP6, "via", h1.ipv6)
    sh("ip", "-n", h1.netns, "route", "add", w2.ipv4, "via", h2.ipv4)
    return h1, out, w1, w2


@BACKENDS
async def test_floating_ips_in_out_hairpin_and_removal(fab: Fabric, drivers: Drivers, backend: dict[str, str]
                                                       ) -> None:
    h1, out, w1, w2 = await two_hosts(fab, drivers, backend)
    assert w1.ipv6 is not None
    # In: from outside, from another host's workload and from w1's host, to the floating IP; the policy on the
    # internal address decides (8080 allowed, 9090 not).
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv4, PORT, via=FIP4) == out.ipv4
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv6, PORT, via=FIP6) == out.ipv6
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv4, CLOSED, via=FIP4) is None
    assert fab.connect_seen(w2.netns, w1.netns, w1.ipv4, PORT, via=FIP4) == w2.ipv4
    assert fab.connect_seen(h1.netns, w1.netns, w1.ipv4, PORT, via=FIP4) is not None  # the host's own traffic
    # Hairpin: w1 to its own floating IP comes back from the floating IP.
    assert fab.connect_seen(w1.netns, w1.netns, w1.ipv4, PORT, via=FIP4) == FIP4
    # Out: to outside every pool w1 leaves as its floating IP (not natOutgoing's host address); to a pool's
    # workload as itself.
    assert fab.connect_seen(w1.netns, out.netns, out.ipv4) == FIP4
    assert fab.connect_seen(w1.netns, out.netns, out.ipv6) == FIP6
    assert fab.source_seen(w1.netns, w2.netns, w2.ipv4) == w1.ipv4

    # Someone deletes the DNAT; the read-back notices and puts it back.
    if backend["backend"] == "nftables":
        tamper = ["nft", "delete", "element", "inet", "calico", "fip-dnat4", f"{{ {FIP4} }}"]
    else:
        tamper = [f"iptables-{backend['iptables_flavour']}", "-t", "nat", "-F", "cali-fip-dnat"]
    sh("ip", "netns", "exec", h1.netns, *tamper)
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv4, PORT, via=FIP4) is None
    await drivers.by_host["h1"].refresh()
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv4, PORT, via=FIP4) == out.ipv4

    # The floating IPs go: DNAT, SNAT and the routes with them; natOutgoing applies again.
    await drivers.by_host["h1"].apply([w1_endpoint(w1, nats=False)])
    assert FIP4 not in proto80(h1.netns, "-4") and FIP6 not in proto80(h1.netns, "-6")
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv4, PORT, via=FIP4) is None
    assert fab.connect_seen(w1.netns, out.netns, out.ipv4) == h1.ipv4
    assert fab.connect_seen(w1.netns, out.netns, out.ipv6) == h1.ipv6
    # And come back.
    await drivers.by_host["h1"].apply([w1_endpoint(w1)])
    assert fab.connect_seen(out.netns, w1.netns, w1.ipv4, PORT, via=FIP4) == out.ipv4
    assert fab.connect_seen(w1.netns, out.netns, out.ipv4) == FIP4


@BACKENDS
async def test_metadata_dnat_to_the_host(fab: Fabric, drivers: Drivers, backend: dict[str, str]) -> None:
    """169.254.169.254:80 from a workload reaches a server on the host's loopback (Felix's default target,
    127.0.0.1:8775), although the workload's egress policy allows nothing and DefaultEndpointToHostAction is
    Drop: Calico allows it first, as DHCP and DNS."""
    _require(backend)
    h1 = fab.add_host("h1", 1, 1)
    w1 = fab.add_workload(h1, "w1", "198.18.1.10")
    driver = await drivers.start(h1, **backend, metadata=MetadataTarget("127.0.0.1", 8775))
    shut = ev.ProfileUpdate("shut", (), ())  # no rule: everything in and out is dropped
    ep = dataclasses.replace(workload(w1.name, w1.iface, w1.ipv4), profile_ids=("shut",))
    await driver.apply([pool(POOL4), shut, ep, ev.InSync()])
    seen = fab.connect_seen(w1.netns, h1.netns, "127.0.0.1", 8775, via="169.254.169.254", via_port=80)
    assert seen == w1.ipv4  # the workload's own address: DNAT only
    assert fab.connect_seen(w1.netns, h1.netns, h1.ipv4, 8775) is None  # anything else to the host: dropped
    assert fab.connect_seen(w1.netns, h1.netns, "127.0.0.1", 8775, via="169.254.169.254", via_port=81) is None

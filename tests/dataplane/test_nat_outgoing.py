"""natOutgoing against the real kernel, on nftables and on iptables (nf_tables and legacy flavours).

A host h1 on the fabric with two workloads: w1 in a natOutgoing pool (IPv4 and IPv6), w2 in a pool without it;
an "outside" namespace in no pool. A one-shot UDP responder reports the source address each datagram arrived
with. Felix's driver (`create_driver`) runs in h1's namespace, fed the events directly.
Run under the shared lock: `flock /tmp/calico-netns.lock .venv/bin/python -m pytest tests/dataplane/test_nat_outgoing.py`.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from calico.calculation import events as ev
from calico.dataplane.driver import KernelDriver
from tests.helpers.hosts import Drivers, Fabric, Host, Workload, sh
from tests.helpers.network_events import ALLOW_PROFILE, pool, workload

pytestmark = pytest.mark.heavy

NAT4, NAT6, PLAIN4 = "198.18.0.0/16", "fd00:1::/48", "198.20.0.0/16"
BACKENDS = pytest.mark.parametrize(
    "backend", [{"backend": "nftables"}, {"backend": "iptables", "iptables_flavour": "nft"},
                {"backend": "iptables", "iptables_flavour": "legacy"}], ids=["nftables", "iptables-nft",
                                                                             "iptables-legacy"])


def _require(backend: dict[str, str]) -> None:
    if backend["backend"] == "iptables":
        tool = f"iptables-{backend['iptables_flavour']}-restore"
        if not shutil.which(tool) or not shutil.which("ipset"):
            pytest.skip(f"{tool} or ipset not installed")


async def host_with_workloads(fab: Fabric, drivers: Drivers, backend: dict[str, str], **cfg: object
                              ) -> tuple[Host, Host, Workload, Workload, KernelDriver]:
    _require(backend)
    h1, out = fab.add_host("h1", 1, 1), fab.add_outside()
    w1 = fab.add_workload(h1, "w1", "198.18.1.10", "fd00:1:0:1::10")
    w2 = fab.add_workload(h1, "w2", "198.20.1.10")
    driver = await drivers.start(h1, **backend, **cfg)
    await driver.apply([pool(NAT4, nat=True), pool(NAT6, nat=True), pool(PLAIN4), ALLOW_PROFILE,
                        workload(w1.name, w1.iface, w1.ipv4, w1.ipv6), workload(w2.name, w2.iface, w2.ipv4),
                        ev.InSync()])
    return h1, out, w1, w2, driver


@BACKENDS
async def test_nat_outgoing_to_outside_only_and_live_pool_changes(fab: Fabric, drivers: Drivers,
                                                                  backend: dict[str, str]) -> None:
    h1, out, w1, w2, driver = await host_with_workloads(fab, drivers, backend)
    assert fab.source_seen(w1.netns, out.netns, out.ipv4) == h1.ipv4  # masqueraded to the host's address
    assert fab.source_seen(w1.netns, out.netns, out.ipv6) == h1.ipv6
    assert fab.source_seen(w2.netns, out.netns, out.ipv4) == w2.ipv4  # its pool has no natOutgoing
    assert fab.source_seen(w1.netns, w2.netns, w2.ipv4) == w1.ipv4  # to another pool's workload: never NATed

    await driver.apply([pool(NAT4, nat=False)])  # natOutgoing off, live
    assert fab.source_seen(w1.netns, out.netns, out.ipv4) == w1.ipv4
    assert fab.source_seen(w1.netns, out.netns, out.ipv6) == h1.ipv6  # the v6 pool still has it
    await driver.apply([pool(NAT4, nat=True)])
    assert fab.source_seen(w1.netns, out.netns, out.ipv4) == h1.ipv4
    await driver.apply([ev.IPPoolRemove(PLAIN4)])  # w2's pool gone: w2 is "outside every pool" now
    assert fab.source_seen(w1.netns, w2.netns, w2.ipv4) == h1.ipv4


@BACKENDS
async def test_nat_outgoing_address_and_repair(fab: Fabric, drivers: Drivers, backend: dict[str, str]) -> None:
    _require(backend)
    snat = "198.19.1.201"
    h1, out, w1, _, driver = await host_with_workloads(fab, drivers, backend, nat_outgoing_address=snat)
    sh("ip", "-n", h1.netns, "addr", "add", f"{snat}/24", "dev", "eth0")
    assert fab.source_seen(w1.netns, out.netns, out.ipv4) == snat
    assert fab.source_seen(w1.netns, out.netns, out.ipv6) == h1.ipv6  # IPv6: masquerade
    # Someone removes the natOutgoing rule; the read-back notices and puts it back.
    if backend["backend"] == "nftables":
        tamper = ["nft", "flush", "chain", "inet", "calico", "nat-postrouting"]
    else:
        tamper = [f"iptables-{backend['iptables_flavour']}", "-t", "nat", "-F", "cali-nat-outgoing"]
    subprocess.run(["ip", "netns", "exec", h1.netns, *tamper], check=True)
    assert fab.source_seen(w1.netns, out.netns, out.ipv4) == w1.ipv4
    await driver.refresh()
    assert fab.source_seen(w1.netns, out.netns, out.ipv4) == snat

"""`calicoctl ipam ...` and `calicoctl delete node` end to end, through the installed entry point, on the embedded
store and on etcd. Addresses are handed out by an `IPAMClient` in the test, as the CNI plugin would."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from calico.datastore import config as dsconfig
from calico.datastore.kv import KVStore
from calico.ipam import AutoAssignArgs, IPAMClient
from tests.e2e.test_calicoctl import Ctl, ctl, module_etcd  # noqa: F401 - fixtures shared with calicoctl's e2e
from tests.ipam.util import allocations

SETUP = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool
spec:
  cidr: 198.18.0.0/25
---
apiVersion: projectcalico.org/v3
kind: IPReservation
metadata:
  name: gateways
spec:
  reservedCIDRs:
    - 198.18.0.0/31
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: h1
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: h2
"""


def wep(name: str, node: str, ip: str) -> str:
    return f"""\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {name}
  namespace: default
spec:
  node: {node}
  interfaceName: cali{name}
  ipNetworks:
    - {ip}/32
"""


@asynccontextmanager
async def datastore(c: Ctl) -> AsyncIterator[KVStore]:
    kv = await dsconfig.open_kv(dsconfig.from_env(c.env))
    try:
        yield kv
    finally:
        await kv.close()


async def assign(c: Ctl, handle: str, host: str, n: int = 1, address: str | None = None) -> list[str]:
    async with datastore(c) as kv:
        ipam = IPAMClient(kv)
        if address is not None:
            await ipam.assign_ip(address, handle_id=handle, hostname=host)
            return [address]
        got = await ipam.auto_assign(AutoAssignArgs(num4=n, handle_id=handle, hostname=host,
                                                    attrs={"namespace": "default", "pod": handle}))
    return [str(a) for a in got.ipv4]


async def test_show_check_release_configure(ctl: Ctl) -> None:  # noqa: F811
    ctl("apply", "-f", ctl.file("setup.yaml", SETUP))
    a = await assign(ctl, "web", "h1", 3)
    b = await assign(ctl, "db", "h2")
    assert not {"198.18.0.0", "198.18.0.1"} & {*a, *b}  # reserved

    table = ctl("ipam", "show").stdout.splitlines()
    assert table[1].split("|")[1:-1] == [" GROUPING ", "     CIDR      ", " IPS TOTAL ", " IPS IN USE ",
                                         " IPS RESERVED ", " IPS FREE  "]
    assert [c.strip() for c in table[3].split("|")[1:-1]] == ["IP Pool", "198.18.0.0/25", "128", "4 (3%)", "2 (2%)",
                                                              "122 (95%)"]
    blocks = [[c.strip() for c in line.split("|")[1:-1]] for line in ctl("ipam", "show", "--show-blocks").stdout
              .splitlines() if line.startswith("| Block")]
    assert sorted((row[6], row[3]) for row in blocks) == [("h1", "3 (5%)"), ("h2", "1 (2%)")]

    who = ctl("ipam", "show", "--ip", a[0]).stdout.splitlines()
    assert who[0] == f"IP {a[0]} is in use" and who[1] == "Handle ID: web"
    assert who[3:6] == ["Attributes:", "  namespace: default", "  node: h1"]
    assert who[6] == "  pod: web" and re.fullmatch(r"  timestamp: \d{4}-\d\d-\d\d [\d:]{8}\.\d{9} \+0000 UTC", who[7])
    assert ctl("ipam", "show", "--ip", "198.18.0.127").stdout == "198.18.0.127 is not assigned\n"
    assert "Invalid IP address" in ctl("ipam", "show", "--ip", "nope", ok=False).stderr

    # No workload owns any of them yet: all four are leaked.
    report_file = ctl.tmp / "report.json"
    out = ctl("ipam", "check", "-o", str(report_file)).stdout
    assert "IPs allocated in IPAM but not in use (leaked): 4" in out and "found 4 problems" in out
    report = json.loads(report_file.read_text())
    assert sorted(e["ip"] for e in report["leakedIPs"]) == sorted([*a, *b])
    assert report["problems"] == 4 and set(report["allocations"]) == {*a, *b}

    # The workloads appear; one address is released and handed out again before the report is used.
    for i, ip in enumerate(a[1:]):
        ctl("apply", "-f", ctl.file(f"w{i}.yaml", wep(f"web{i}", "h1", ip)))
    assert ctl("ipam", "release", "--ip", a[0]).stdout == f"Successfully released IP address {a[0]}\n"
    assert "is not assigned" in ctl("ipam", "release", "--ip", a[0], ok=False).stderr
    await assign(ctl, "late", "h1", address=a[0])  # the same address, another holder
    released = ctl("ipam", "release", "--from-report", str(report_file))
    # b[0] and a[1:] are still held as the report recorded them (a[1:] have owners now, but the operator asked);
    # a[0] has a new holder since the report, so it stays.
    assert "Released 3 of 4 leaked IP address(es)" in released.stdout
    assert f"Skipped {a[0]}: no longer allocated as the report recorded it" in released.stderr
    async with datastore(ctl) as kv:
        assert await allocations(kv) == {a[0]: "late"}

    assert ctl("ipam", "configure", "--strictaffinity=true").stdout == "Successfully set StrictAffinity to: true\n"
    cfg = ctl("ipam", "show", "--show-configuration").stdout
    assert "| StrictAffinity     | true  |" in cfg and "| MaxBlocksPerHost   | 0     |" in cfg
    ctl("ipam", "configure", "--strictaffinity", "maybe", ok=False)


async def test_delete_node_releases_its_addresses_and_affinities(ctl: Ctl) -> None:  # noqa: F811
    ctl("apply", "-f", ctl.file("setup.yaml", SETUP))
    mine = await assign(ctl, "web", "h1", 2)
    theirs = await assign(ctl, "db", "h2")
    ctl("apply", "-f", ctl.file("w.yaml", wep("web", "h1", mine[0]) + "---\n" + wep("db", "h2", theirs[0])))
    ctl("delete", "node", "h1")
    assert ctl("get", "wep", "-o", "name").stdout.split() == ["workloadendpoint/db"]
    async with datastore(ctl) as kv:
        assert await allocations(kv) == {theirs[0]: "db"}
        affinities, _ = await kv.list("/calico/ipam/v2/host/h1/")
        assert affinities == []
    out = ctl("ipam", "check").stdout
    assert out.endswith("Check complete; found 0 problems.\n"), out
    assert "does not exist" in ctl("delete", "node", "h1", ok=False).stderr


async def test_delete_ippool_lets_go_of_its_blocks(ctl: Ctl) -> None:  # noqa: F811
    """As Calico does: hosts let go of a deleted pool's blocks (empty ones are deleted), so no host keeps
    announcing a block of a pool that is gone; another pool's blocks are untouched."""
    other = SETUP.replace("name: pool\n", "name: other\n").replace("198.18.0.0/25", "198.18.1.0/25")
    ctl("apply", "-f", ctl.file("setup.yaml", SETUP))
    ctl("apply", "-f", ctl.file("other.yaml", other.split("---")[0]))
    gone = await assign(ctl, "gone", "h1", address="198.18.0.70")
    kept = await assign(ctl, "kept", "h2", address="198.18.1.5")
    async with datastore(ctl) as kv:
        await IPAMClient(kv).release_by_handle("gone")  # the pool's block is empty again, still h1's
        assert len((await kv.list("/calico/ipam/v2/host/h1/"))[0]) == 1
    ctl("delete", "ippool", "pool")
    async with datastore(ctl) as kv:
        assert (await kv.list("/calico/ipam/v2/host/h1/"))[0] == []
        assert (await kv.list("/calico/ipam/v2/assignment/ipv4/block/198.18.0."))[0] == []  # empty block deleted
        assert len((await kv.list("/calico/ipam/v2/host/h2/"))[0]) == 1
        assert await allocations(kv) == {kept[0]: "kept"}
    assert gone == ["198.18.0.70"]

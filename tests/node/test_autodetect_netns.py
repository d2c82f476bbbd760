"""Autodetection against a real kernel: interfaces and addresses read with pyroute2 and the route source found by
a connected UDP socket inside a test namespace, then `calico-node -startup` registering the Node for each method
(and refusing a duplicate address). Run under /tmp/calico-netns.lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.store import ResourceStore
from calico.resources import parse_resource
from tests.node.conftest import NodeHost, sh

pytestmark = pytest.mark.heavy

READ_HOST = """
import asyncio, json
from calico.node.hostnet import NetlinkHostNetwork
async def main():
    net = NetlinkHostNetwork()
    ifaces = {i.name: [str(a) for a in i.addresses] for i in await net.interfaces()}
    order = [i.name for i in sorted(await net.interfaces(), key=lambda i: i.index)]
    src = {d: str(await net.route_source(d, 6 if ":" in d else 4))
           for d in ("198.19.77.7", "198.19.2.99", "fd00:c0de:9::1")}
    print(json.dumps({"ifaces": ifaces, "order": order, "src": src}))
asyncio.run(main())
"""


def test_netlink_host_network_reads_the_namespace(test_host: NodeHost) -> None:
    import sys

    out = sh("ip", "netns", "exec", test_host.host, sys.executable, "-c", READ_HOST)
    seen = json.loads(out.stdout)
    ifaces = seen["ifaces"]
    assert ifaces["lo"][0] == "127.0.0.1/8"
    assert ifaces[test_host.en][:2] == ["198.19.1.3/24", "fd00:c0de:1::3/64"]  # IPv4 first, then IPv6
    assert any(a.startswith("fe80::") for a in ifaces[test_host.en])
    assert ifaces[test_host.ex][0] == "198.19.2.3/24" and ifaces[test_host.docker][0] == "198.19.9.1/24"
    assert seen["order"] == ["lo", test_host.en, test_host.ex, test_host.docker]
    # the default route goes out of en, the 198.19.2.0/24 subnet is on ex: no packet is sent to find out
    assert seen["src"] == {"198.19.77.7": "198.19.1.3", "198.19.2.99": "198.19.2.3", "fd00:c0de:9::1": "fd00:c0de:1::3"}


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "NODENAME": "node-a", "CALICO_EMBEDDED_PATH": str(tmp_path / "kv.db"),
            "CALICO_NODENAME_FILE": str(tmp_path / "nodename"), **extra}


async def node_addresses(tmp_path: Path, name: str = "node-a") -> tuple[str | None, str | None]:
    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        node = await ResourceStore(kv).get("Node", name)
    finally:
        await kv.close()
    bgp = node.spec.bgp  # type: ignore[attr-defined]
    return bgp.ipv4Address, bgp.ipv6Address


@pytest.mark.parametrize(
    ("env", "v4", "v6"),
    [
        # Calico scans from the highest interface index: ex before en; docker* is never chosen
        ({}, "198.19.2.3/24", None),
        ({"IP_AUTODETECTION_METHOD": "interface=^en"}, "198.19.1.3/24", None),
        ({"IP_AUTODETECTION_METHOD": "skip-interface=^ex"}, "198.19.1.3/24", None),
        ({"IP_AUTODETECTION_METHOD": "can-reach=198.19.77.7", "IP6": "autodetect",
          "IP6_AUTODETECTION_METHOD": "can-reach=fd00:c0de:9::1"}, "198.19.1.3/24", "fd00:c0de:1::3/64"),
        ({"IP_AUTODETECTION_METHOD": "cidr=198.19.9.0/24"}, "198.19.9.1/24", None),
        ({"IP": "198.19.2.3", "IP6": "fd00:c0de:1::3"}, "198.19.2.3/24", "fd00:c0de:1::3/64"),
    ],
    ids=["first-found", "interface", "skip-interface", "can-reach", "cidr", "given"],
)
async def test_startup_registers_the_detected_address(
    test_host: NodeHost, tmp_path: Path, env: dict[str, str], v4: str, v6: str | None
) -> None:
    res = test_host.node("-startup", env=base_env(tmp_path, **env))
    assert res.returncode == 0, res.stderr
    assert await node_addresses(tmp_path) == (v4, v6)
    assert (tmp_path / "nodename").read_text() == "node-a"


async def test_startup_refuses_an_address_another_node_uses(test_host: NodeHost, tmp_path: Path) -> None:
    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        await ResourceStore(kv).create(parse_resource({
            "apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "node-b"},
            "spec": {"bgp": {"ipv4Address": "198.19.1.3/16"}}}))
    finally:
        await kv.close()
    res = test_host.node("-startup", env=base_env(tmp_path, IP_AUTODETECTION_METHOD="interface=^en"))
    assert res.returncode == 1
    assert "address conflict: Node 'node-b' is already using the IPv4 address 198.19.1.3" in res.stderr
    # no method finds anything: a clear error, exit 1
    res = test_host.node("-startup", env=base_env(tmp_path, IP_AUTODETECTION_METHOD="interface=^nothing"))
    assert res.returncode == 1
    assert "IP: could not autodetect an IPv4 address" in res.stderr

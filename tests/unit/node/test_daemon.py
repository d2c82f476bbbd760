"""run_node's start: registration only (-startup), its exit codes, and the missing renderer refused up front."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.store import ResourceStore
from calico.node.autodetect import HostInterface
from calico.node.daemon import EXIT_FATAL, EXIT_OK, run_node
from calico.node.hostnet import StaticHostNetwork
from calico.node.settings import NodeSettings
from calico.resources import parse_resource

NET = StaticHostNetwork([HostInterface("eth0", 2, (ipaddress.ip_interface("198.19.1.3/24"),))])


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"NODENAME": "h1", "CALICO_EMBEDDED_PATH": str(tmp_path / "kv.db"),
            "CALICO_NODENAME_FILE": str(tmp_path / "nodename"), **extra}


async def run(e: dict[str, str], startup_only: bool = True) -> int:
    return await run_node(NodeSettings.from_env(e), e, net=NET, startup_only=startup_only)


async def test_startup_registers_and_exits_0(tmp_path: Path) -> None:
    assert await run(env(tmp_path)) == EXIT_OK
    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        node = await ResourceStore(kv).get("Node", "h1")
    finally:
        await kv.close()
    assert node.spec.bgp.ipv4Address == "198.19.1.3/24"  # type: ignore[attr-defined]
    assert (tmp_path / "nodename").read_text() == "h1"


async def test_a_conflict_exits_1_with_the_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        await ResourceStore(kv).create(parse_resource({
            "apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "h2"},
            "spec": {"bgp": {"ipv4Address": "198.19.1.3/24"}}}))
    finally:
        await kv.close()
    with caplog.at_level(logging.ERROR):
        assert await run(env(tmp_path)) == EXIT_FATAL
    assert "address conflict: Node 'h2' is already using the IPv4 address 198.19.1.3" in caplog.text


async def test_bad_datastore_settings_exit_1(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert await run(env(tmp_path, DATASTORE_TYPE="etcdv3")) == EXIT_FATAL
    assert "etcdEndpoints" in caplog.text



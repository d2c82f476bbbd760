"""Fixtures for dataplane tests with real packets in network namespaces.

(The root namespace guard covering the whole suite is in `tests/conftest.py`.)
* `world` (function): a fresh `tests.helpers.netns.World` (host + workload namespaces); deleted afterwards,
  also on failure.
* `backend` (function): an `NftBackend` bound to the world's host namespace, once per transport: libnftables
  in-process (what Felix uses) and a spawned `nft -f -` per call.
* `fab` (function): a `tests.helpers.hosts.Fabric` (several host namespaces on a fabric); deleted afterwards.
* `drivers` (function): `tests.helpers.hosts.Drivers`, Felix's dataplane driver per host; stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.transport import LibNftTransport, SpawnTransport
from tests.helpers.hosts import Drivers, Fabric
from tests.helpers.netns import World, new_run_id


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("dataplane tests need root (network namespaces)")
    for tool in ("nft", "ip", "ping"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")


@pytest.fixture
def world() -> Iterator[World]:
    _require_tools()
    w = World(new_run_id())
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(params=["libnftables", "nft-process"])
def backend(world: World, request: pytest.FixtureRequest) -> Iterator[NftBackend]:
    transport = LibNftTransport(world.host) if request.param == "libnftables" else SpawnTransport(world.host)
    b = NftBackend(transport)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def fab() -> Iterator[Fabric]:
    _require_tools()
    f = Fabric(new_run_id())
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
async def drivers() -> AsyncIterator[Drivers]:
    d = Drivers()
    try:
        yield d
    finally:
        await d.stop()

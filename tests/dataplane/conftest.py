"""Fixtures for dataplane tests with real packets in network namespaces.

* `root_namespace_guard` (session, autouse): snapshots the root namespace (nft ruleset, routes, link names,
  forwarding/rp_filter sysctls) before the dataplane tests and fails the run if anything changed.
* `world` (function): a fresh `tests.helpers.netns.World` (host + workload namespaces); deleted afterwards,
  also on failure.
* `backend` (function): an `NftBackend` bound to the world's host namespace.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from calico.dataplane.nftables.backend import NftBackend
from tests.helpers.netns import World, new_run_id
from tests.helpers.root_guard import RootSnapshot


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("dataplane tests need root (network namespaces)")
    for tool in ("nft", "ip", "ping"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")


@pytest.fixture(scope="session", autouse=True)
def root_namespace_guard() -> Iterator[None]:
    before = RootSnapshot.take()
    yield
    after = RootSnapshot.take()
    problems = before.diff(after)
    assert not problems, "\n".join(problems)


@pytest.fixture
def world() -> Iterator[World]:
    _require_tools()
    w = World(new_run_id())
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def backend(world: World) -> NftBackend:
    return NftBackend(world.host)

"""Fixtures for IPAM against real datastores: `world` (the `kv` fixture's store, embedded or etcd, with helpers to
write IPPools, Nodes, IPReservations and WorkloadEndpoints, and an `IPAMClient`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.ipam import IPAMClient
from tests.ipam.util import World


@pytest.fixture
async def world(kv: KVStore) -> AsyncIterator[World]:
    yield World(kv, ResourceStore(kv), IPAMClient(kv, timeout=10.0))


"""Fixtures for real-BIRD tests (run them under the namespace lock: `flock /tmp/calico-netns.lock ...`).

* `fabric` (module): a `BGPFabric` of three hosts, each running `calico-bgp-daemon` and BIRD, over one embedded
  datastore that holds three Nodes, an IPv4 and an IPv6 pool, one confirmed block per host and family, and a
  pending block on h3. Torn down at the end of the module, also after a failure.
* `store`: write resources and affinities into the fabric's datastore (`store.apply(doc)`, `store.delete(kind,
  name)`, `store.affinity(node, cidr, state)`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.keys import affinity_key
from calico.datastore.store import ResourceStore
from calico.resources import parse_resource
from tests.bgp.fabric import BGPFabric, Host, wait_for
from tests.helpers.netns import new_run_id

T = TypeVar("T")

POOL_V4 = "198.18.0.0/16"
POOL_V6 = "fd00:1::/48"


def block4(host: Host) -> str:
    return f"198.18.{host.index}.0/26"


def block6(host: Host) -> str:
    return f"fd00:1::{host.index}00/122"


def doc(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def node_doc(host: Host, labels: dict[str, str] | None = None, **bgp: Any) -> dict[str, Any]:
    spec = {"ipv4Address": f"{host.ipv4}/24", "ipv6Address": f"{host.ipv6}/64", **bgp}
    return doc("Node", host.name, {"bgp": spec}, labels)


class Store:
    def __init__(self, path: str) -> None:
        self.path = path

    def _run(self, op: Callable[[EmbeddedKV], Awaitable[T]]) -> T:
        async def main() -> T:
            kv = await EmbeddedKV.open(self.path)
            try:
                return await op(kv)
            finally:
                await kv.close()

        return asyncio.run(main())

    def apply(self, *docs: dict[str, Any]) -> None:
        async def op(kv: EmbeddedKV) -> None:
            store = ResourceStore(kv)
            for d in docs:
                await store.apply(parse_resource(d))

        self._run(op)

    def delete(self, kind: str, name: str) -> None:
        self._run(lambda kv: ResourceStore(kv).delete(kind, name))

    def affinity(self, node: str, cidr: str, state: str = "confirmed") -> None:
        value = json.dumps({"state": state, "deleted": False}).encode()
        self._run(lambda kv: kv.put(affinity_key(node, cidr), value))


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("BIRD tests need root (network namespaces)")
    for tool in ("ip", "bird"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")


@pytest.fixture(scope="module")
def fabric() -> Iterator[BGPFabric]:
    _require_tools()
    fab = BGPFabric(new_run_id())
    try:
        store = Store(str(fab.datastore))
        store.apply(
            doc("IPPool", "pool4", {"cidr": POOL_V4}),
            doc("IPPool", "pool6", {"cidr": POOL_V6}),
            *(node_doc(h) for h in fab.hosts.values()),
        )
        for h in fab.hosts.values():
            store.affinity(h.name, block4(h))
            store.affinity(h.name, block6(h))
        store.affinity("h3", "198.18.33.0/26", "pending")
        for h in fab.hosts.values():
            fab.start_daemon(h)
        for h in fab.hosts.values():
            fab.start_bird(h)
        for h in fab.hosts.values():
            others = {o.ipv4 for o in fab.hosts.values() if o is not h} | {
                o.ipv6 for o in fab.hosts.values() if o is not h
            }
            wait_for(f"{h.name}'s mesh sessions", lambda h=h, others=others: h.established() == others, timeout=30)
        yield fab
    except BaseException:
        for h in fab.hosts.values():
            print(fab.logs(h))
        raise
    finally:
        fab.close()


@pytest.fixture
def store(fabric: BGPFabric) -> Store:
    return Store(str(fabric.datastore))

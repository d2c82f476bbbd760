"""Felix's status keys, followed for the driver's leader: live hosts and the OpenStack endpoints' status.

Enters: the keys under `/calico/felix/v2/<region>/host/` (a list, then watch events; `follow` keeps a
`StatusFold` current from the datastore thread). Leaves: the hosts whose Felix has a status key (it is
leased: a dead Felix's key expires) and the endpoints whose reported status Neutron has not been told yet.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterable

from calico.datastore.kv import EventType, KeyValue, KVStore, ResyncNeeded, WatchEvent
from calico.openstack import names

EndpointKey = tuple[str, str]  # (host, port id)


class StatusFold:
    """Thread-safe: the datastore thread folds, the leader's thread takes what changed."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._hosts: set[str] = set()
        self._endpoints: dict[EndpointKey, str] = {}
        self._told: dict[EndpointKey, str] = {}  # what Neutron was last told

    def reset(self, kvs: Iterable[KeyValue]) -> None:
        with self._lock:
            self._hosts.clear()
            self._endpoints.clear()
            for kv in kvs:
                self._put(kv.key, kv.value)

    def apply(self, events: Iterable[WatchEvent]) -> None:
        with self._lock:
            for e in events:
                if e.type is EventType.PUT and e.value is not None:
                    self._put(e.key, e.value)
                else:
                    self._delete(e.key)

    def hosts(self) -> set[str]:
        with self._lock:
            return set(self._hosts)

    def untold(self) -> dict[EndpointKey, str]:
        """Endpoints whose status changed since Neutron was last told (a status Felix withdrew is not news)."""
        with self._lock:
            self._told = {k: v for k, v in self._told.items() if k in self._endpoints}
            return {k: v for k, v in self._endpoints.items() if self._told.get(k) != v}

    def told(self, key: EndpointKey, status: str) -> None:
        with self._lock:
            self._told[key] = status

    def _split(self, key: str) -> list[str]:
        return key[len(self.prefix):].split("/") if key.startswith(self.prefix) else []

    def _put(self, key: str, value: bytes) -> None:
        rest = self._split(key)
        if len(rest) == 2 and rest[1] == "status":
            self._hosts.add(rest[0])
        elif len(rest) == 6 and rest[1] == "workload" and rest[2] == names.ORCHESTRATOR:
            try:
                status = json.loads(value)["status"]
            except (ValueError, KeyError, TypeError):
                return  # not a status we understand: left as it was
            if isinstance(status, str):
                self._endpoints[(rest[0], rest[5])] = status

    def _delete(self, key: str) -> None:
        rest = self._split(key)
        if len(rest) == 2 and rest[1] == "status":
            self._hosts.discard(rest[0])
        elif len(rest) == 6 and rest[1] == "workload":
            self._endpoints.pop((rest[0], rest[5]), None)


async def follow(kv: KVStore, fold: StatusFold, wake: threading.Event) -> None:
    """Keep `fold` current (list, then watch; list again when the watch needs a resync), setting `wake` after
    every change. Runs until cancelled or the connection fails (the caller starts it again)."""
    while True:
        kvs, revision = await kv.list(fold.prefix)
        fold.reset(kvs)
        wake.set()
        try:
            async for batch in kv.watch(fold.prefix, revision + 1):
                fold.apply(batch)
                wake.set()
        except ResyncNeeded:
            await asyncio.sleep(0.5)

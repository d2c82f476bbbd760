"""Desired OpenStack resources → the datastore: only what differs is written, every write a compare-and-swap.

Enters: the documents the mapping produced and the scope they cover (kinds, optionally names). Leaves: creates,
updates and deletes on the `ResourceStore`, at most `concurrency` in flight. A delete or update names the
revision it read, so a change someone made meanwhile is never overwritten blindly: that key is retried from a
fresh read. Datastore outages surface as `DatastoreUnavailable` for the caller to retry later.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.kv import KeyExists, KeyNotFound, RevisionMismatch
from calico.datastore.store import AlreadyExists, Conflict, NotFound, ResourceStore
from calico.openstack import names
from calico.resources import Resource, parse_resource

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (kind, name), all in the `openstack` namespace or cluster-wide
KINDS = ("WorkloadEndpoint", "NetworkPolicy", "NetworkSet")  # the namespaced kinds a resync owns


@dataclass
class Stats:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (f"created {self.created}, updated {self.updated}, deleted {self.deleted}, "
                f"unchanged {self.unchanged}, failed {len(self.failed)}")


def _content(res: Resource) -> tuple[Any, Any]:
    data = res.to_dict()
    return data.get("metadata", {}).get("labels"), data.get("spec")


def key_of(doc: Mapping[str, Any]) -> Key:
    return doc["kind"], doc["metadata"]["name"]


def _ns(kind: str) -> str | None:
    return None if kind == "Profile" else names.NAMESPACE


class Writer:
    def __init__(self, store: ResourceStore, concurrency: int = 32, dry_run: bool = False) -> None:
        self.store = store
        self.dry_run = dry_run  # count what would change, change nothing
        self._limit = asyncio.Semaphore(concurrency)

    async def put(self, doc: Mapping[str, Any], stats: Stats | None = None) -> None:
        """Make the stored resource equal `doc` (create, or update only if labels or spec differ)."""
        stats = stats if stats is not None else Stats()
        want = parse_resource(doc)
        for _attempt in range(5):
            try:
                current = await self.store.get(want.KIND, want.metadata.name, want.metadata.namespace)
            except NotFound:
                if self.dry_run:
                    stats.created += 1
                    return
                try:
                    await self.store.create(want)
                    stats.created += 1
                    return
                except AlreadyExists:
                    continue
            if _content(current) == _content(want):
                stats.unchanged += 1
                return
            if self.dry_run:
                stats.updated += 1
                return
            meta = want.metadata.model_copy(update={"resourceVersion": current.metadata.resourceVersion})
            try:
                await self.store.update(want.model_copy(update={"metadata": meta}))
                stats.updated += 1
                return
            except (Conflict, NotFound):
                continue
        raise Conflict(f"{want.KIND}({want.metadata.name}): kept changing under five attempts to write it")

    async def remove(self, kind: str, name: str, stats: Stats | None = None,
                     resource_version: str | None = None) -> None:
        """Delete if present (with `resource_version`: only that version)."""
        if self.dry_run:
            if stats is not None:
                stats.deleted += 1
            return
        try:
            await self.store.delete(kind, name, _ns(kind), resource_version=resource_version)
            if stats is not None:
                stats.deleted += 1
        except NotFound:
            pass

    async def converge(self, desired: Iterable[Mapping[str, Any]], kinds: Iterable[str] = KINDS,
                       owned: Any = None) -> Stats:
        """Make the stored resources of `kinds` in the openstack namespace exactly `desired`.

        `owned(kind, name, resource)` limits deletion to the caller's scope (None: everything of `kinds`)."""
        stats = Stats()
        want = {key_of(d): d for d in desired}
        current: dict[Key, Resource] = {}
        for kind in sorted({*kinds, *(k for k, _ in want)}):
            for res in await self.store.list(kind, _ns(kind)):
                current[(kind, res.metadata.name)] = res
        jobs = []
        for key, doc in want.items():
            have = current.get(key)
            res = parse_resource(doc)
            if have is not None and _content(have) == _content(res):
                stats.unchanged += 1
            else:
                jobs.append(self._guard(key, self._write_known(res, have, doc, stats), stats))
        for (kind, name), res in current.items():
            if (kind, name) not in want and (owned is None or owned(kind, name, res)):
                jobs.append(self._guard((kind, name), self._remove_read(kind, name, res, stats), stats))
        await asyncio.gather(*jobs)
        return stats

    async def put_raw(self, key: str, data: Mapping[str, Any], stats: Stats | None = None) -> None:
        """A plain JSON record (not a resource): written only when it differs, with a CAS on its revision."""
        stats = stats if stats is not None else Stats()
        value = json.dumps(data, sort_keys=True).encode()
        for _attempt in range(5):
            current = await self.store.kv.get(key)
            if current is not None and current.value == value:
                stats.unchanged += 1
                return
            if self.dry_run:
                stats.created += current is None
                stats.updated += current is not None
                return
            try:
                if current is None:
                    await self.store.kv.create(key, value)
                    stats.created += 1
                else:
                    await self.store.kv.update(key, value, mod_revision=current.mod_revision)
                    stats.updated += 1
                return
            except (KeyExists, KeyNotFound, RevisionMismatch):
                continue
        raise Conflict(f"{key}: kept changing under five attempts to write it")

    async def remove_raw(self, key: str, stats: Stats | None = None, mod_revision: int | None = None) -> None:
        if self.dry_run:
            if stats is not None:
                stats.deleted += 1
            return
        try:
            await self.store.kv.delete(key, mod_revision=mod_revision)
            if stats is not None:
                stats.deleted += 1
        except KeyNotFound:
            pass

    async def converge_raw(self, prefix: str, desired: Mapping[str, Mapping[str, Any]], stats: Stats) -> None:
        """Make the records under `prefix` exactly `desired` (key → JSON data)."""
        kvs, _ = await self.store.kv.list(prefix)
        have = {kv.key: kv for kv in kvs}
        jobs = [self._guard(("record", key), self.put_raw(key, data, stats), stats) for key, data in desired.items()
                if key not in have or have[key].value != json.dumps(data, sort_keys=True).encode()]
        stats.unchanged += len(desired) - len(jobs)
        jobs += [self._guard(("record", key), self.remove_raw(key, stats, kv.mod_revision), stats)
                 for key, kv in have.items() if key not in desired]
        await asyncio.gather(*jobs)

    async def _write_known(self, want: Resource, have: Resource | None, doc: Mapping[str, Any], stats: Stats) -> None:
        """One round trip when what was listed still holds (create an absent key, update at the listed
        revision); anything else falls back to `put`, which reads again."""
        if not self.dry_run:
            try:
                if have is None:
                    await self.store.create(want)
                    stats.created += 1
                    return
                meta = want.metadata.model_copy(update={"resourceVersion": have.metadata.resourceVersion})
                await self.store.update(want.model_copy(update={"metadata": meta}))
                stats.updated += 1
                return
            except (AlreadyExists, Conflict, NotFound):
                pass
        await self.put(doc, stats)

    async def _remove_read(self, kind: str, name: str, res: Resource, stats: Stats) -> None:
        try:
            await self.remove(kind, name, stats, resource_version=res.metadata.resourceVersion)
        except Conflict:  # changed since we listed it: decide again from a fresh read next resync
            stats.failed.append(f"{kind}({name}): changed while being deleted; left for the next resync")

    async def _guard(self, key: Key, job: Any, stats: Stats) -> None:
        async with self._limit:
            try:
                await job
            except (Conflict, RevisionMismatch, ValueError) as exc:
                log.warning("%s(%s): %s", key[0], key[1], exc)
                stats.failed.append(f"{key[0]}({key[1]}): {exc}")

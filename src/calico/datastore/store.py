"""Typed resource store: Calico v3 resources over any `KVStore`, with `resourceVersion` concurrency.

Enters: validated `Resource` objects (from `calico.resources`). Leaves: stored resources carrying
`resourceVersion` (the key's mod revision), `uid` and `creationTimestamp`. Checks here are the ones that need
the datastore: IPPool overlap, a policy's tier existing, the `default` tier existing and undeletable, and a tier
with policies not being deletable.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import uuid

from calico.datastore.keys import ResourceKey, kind_prefix
from calico.datastore.kv import KeyExists, KeyNotFound, KeyValue, KVStore, RevisionMismatch
from calico.resources import KINDS, ObjectMeta, Resource, ResourceError, parse_resource

log = logging.getLogger(__name__)

DEFAULT_TIER = "default"
DEFAULT_TIER_ORDER = 1_000_000.0
POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy", "StagedGlobalNetworkPolicy")


class StoreError(Exception):
    """A refused store operation; the message names the resource."""


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The resourceVersion given is stale: someone else changed the resource first."""


class Refused(StoreError):
    """The change breaks a rule that spans resources (overlapping pools, missing tier, ...)."""


def describe(kind: str, name: str, namespace: str | None) -> str:
    return f"{kind}({namespace}/{name})" if namespace else f"{kind}({name})"


def key_of(res: Resource) -> ResourceKey:
    return ResourceKey(res.PLURAL, res.metadata.name, res.metadata.namespace if res.NAMESPACED else None)


def encode(res: Resource) -> bytes:
    """The stored form: the user-facing dict without resourceVersion (that is the key's revision)."""
    data = res.to_dict()
    data.get("metadata", {}).pop("resourceVersion", None)
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def decode(kv: KeyValue) -> Resource:
    """A stored value back to a resource; raises ResourceError on a malformed value."""
    try:
        data = json.loads(kv.value)
    except ValueError as e:
        raise ResourceError(f"{kv.key}: stored value is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ResourceError(f"{kv.key}: stored value is not a JSON object")
    res = parse_resource(data)
    return _with_meta(res, resourceVersion=str(kv.mod_revision))


def _with_meta(res: Resource, **changes: object) -> Resource:
    return res.model_copy(update={"metadata": res.metadata.model_copy(update=changes)})


class ResourceStore:
    def __init__(self, kv: KVStore) -> None:
        self.kv = kv

    # --- reads -------------------------------------------------------------------------------------

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Resource:
        return decode(await self._raw(kind, name, namespace))

    async def _raw(self, kind: str, name: str, namespace: str | None) -> KeyValue:
        cls = KINDS[kind]
        key = ResourceKey(cls.PLURAL, name, namespace if cls.NAMESPACED else None)
        kv = await self.kv.get(key.path())
        if kv is None:
            raise NotFound(f"{describe(kind, name, namespace)}: resource does not exist")
        return kv

    async def _current(self, kind: str, name: str, namespace: str | None) -> tuple[KeyValue, Resource | None]:
        """The stored key and its resource, or None for a value that no longer decodes (so that it can still
        be replaced or deleted: a corrupt value must never be stuck)."""
        kv = await self._raw(kind, name, namespace)
        try:
            return kv, decode(kv)
        except ResourceError as e:
            log.warning("%s: replacing or deleting a malformed stored value: %s", describe(kind, name, namespace), e)
            return kv, None

    async def list(self, kind: str, namespace: str | None = None) -> list[Resource]:
        """Every stored resource of a kind (in one namespace when given); malformed values are logged and
        skipped so one bad value never hides the rest."""
        cls = KINDS[kind]
        kvs, _ = await self.kv.list(kind_prefix(cls.PLURAL, namespace if cls.NAMESPACED else None))
        out = []
        for kv in kvs:
            try:
                out.append(decode(kv))
            except ResourceError as e:
                log.warning("skipping malformed datastore value at %s: %s", kv.key, e)
        return out

    # --- writes ------------------------------------------------------------------------------------

    async def create(self, res: Resource) -> Resource:
        res = self._defaulted(res)
        await self._check(res)
        stored = _with_meta(
            res,
            resourceVersion=None,
            uid=res.metadata.uid or str(uuid.uuid4()),
            creationTimestamp=res.metadata.creationTimestamp or _now(),
        )
        try:
            rev = await self.kv.create(key_of(res).path(), encode(stored))
        except KeyExists:
            raise AlreadyExists(f"{_desc(res)}: resource already exists") from None
        return _with_meta(stored, resourceVersion=str(rev))

    async def update(self, res: Resource) -> Resource:
        """Replace an existing resource. With `metadata.resourceVersion` set, only if it is current."""
        res = self._defaulted(res)
        raw, current = await self._current(res.KIND, res.metadata.name, res.metadata.namespace)
        wanted = res.metadata.resourceVersion
        if wanted and wanted != str(raw.mod_revision):
            raise Conflict(
                f"{_desc(res)}: resourceVersion {wanted} is stale (current is "
                f"{raw.mod_revision}); get the resource again and retry"
            )
        await self._check(res)
        kept = current.metadata if current else res.metadata  # a corrupt value keeps nothing
        stored = _with_meta(
            res,
            resourceVersion=None,
            uid=kept.uid or str(uuid.uuid4()),
            creationTimestamp=kept.creationTimestamp or _now(),
        )
        try:
            rev = await self.kv.update(key_of(res).path(), encode(stored), mod_revision=raw.mod_revision)
        except RevisionMismatch:
            raise Conflict(f"{_desc(res)}: changed by someone else during the update; retry") from None
        except KeyNotFound:
            raise NotFound(f"{_desc(res)}: deleted by someone else during the update") from None
        return _with_meta(stored, resourceVersion=str(rev))

    async def apply(self, res: Resource) -> tuple[Resource, bool]:
        """Create or update; returns the stored resource and whether it was created."""
        try:
            return await self.create(res), True
        except AlreadyExists:
            return await self.update(res), False

    async def delete(
        self, kind: str, name: str, namespace: str | None = None, resource_version: str | None = None
    ) -> Resource:
        raw, current = await self._current(kind, name, namespace)
        if resource_version and resource_version != str(raw.mod_revision):
            raise Conflict(f"{describe(kind, name, namespace)}: resourceVersion {resource_version} is stale")
        if current is None:  # what was stored no longer decodes: report what the key names
            cls = KINDS[kind]
            meta = ObjectMeta(name=name, namespace=namespace if cls.NAMESPACED else None)
            current = cls.model_construct(kind=kind, metadata=meta)
        await self._check_delete(current)
        try:
            await self.kv.delete(raw.key, mod_revision=raw.mod_revision)
        except RevisionMismatch:
            raise Conflict(f"{describe(kind, name, namespace)}: changed during the delete; retry") from None
        except KeyNotFound:
            raise NotFound(f"{describe(kind, name, namespace)}: resource does not exist") from None
        return current

    async def ensure_default_tier(self) -> None:
        """The `default` tier always exists (created on first use, as Calico does)."""
        cls = KINDS["Tier"]
        if await self.kv.get(ResourceKey(cls.PLURAL, DEFAULT_TIER).path()) is not None:
            return
        tier = parse_resource(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "Tier",
                "metadata": {"name": DEFAULT_TIER},
                "spec": {"order": DEFAULT_TIER_ORDER, "defaultAction": "Deny"},
            }
        )
        with contextlib.suppress(AlreadyExists):  # another client created it first
            await self.create(tier)

    # --- rules that span resources ----------------------------------------------------------------

    @staticmethod
    def _defaulted(res: Resource) -> Resource:
        if res.NAMESPACED and not res.metadata.namespace:
            return _with_meta(res, namespace="default")
        return res

    async def _check(self, res: Resource) -> None:
        if res.KIND == "IPPool":
            mine = ipaddress.ip_network(res.spec.cidr)
            for other in await self.list("IPPool"):
                if other.metadata.name == res.metadata.name:
                    continue
                theirs = ipaddress.ip_network(other.spec.cidr)
                if mine.version == theirs.version and mine.overlaps(theirs):
                    raise Refused(
                        f"{_desc(res)}: spec.cidr {mine} overlaps IPPool({other.metadata.name}) {theirs}"
                    )
        elif res.KIND in POLICY_KINDS:
            tier = res.spec.tier or DEFAULT_TIER
            if tier != DEFAULT_TIER:
                try:
                    await self.get("Tier", tier)
                except NotFound:
                    raise Refused(f"{_desc(res)}: spec.tier: tier {tier!r} does not exist") from None

    async def _check_delete(self, res: Resource) -> None:
        if res.KIND != "Tier":
            return
        if res.metadata.name == DEFAULT_TIER:
            raise Refused(f"{_desc(res)}: the default tier cannot be deleted")
        for kind in POLICY_KINDS:
            users = [p for p in await self.list(kind) if (p.spec.tier or DEFAULT_TIER) == res.metadata.name]
            if users:
                raise Refused(
                    f"{_desc(res)}: tier still holds {len(users)} {kind}(s), e.g. "
                    f"{users[0].metadata.name}; delete them first"
                )


def _desc(res: Resource) -> str:
    return describe(res.KIND, res.metadata.name, res.metadata.namespace)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

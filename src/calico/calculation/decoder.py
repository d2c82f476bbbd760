"""Decoder: one syncer update in; a typed resource change, an affinity change, a bad value, or nothing out.

Enters: the key and raw value of a `calico.datastore.syncer.Update` (value None = deleted; otherwise the
JSON of the resource's `to_dict()`, or for an IPAM block affinity `{"state": ..., "deleted": ...}`).
Leaves: `Change(key, kind, resource)` (resource None = deleted); `BadValue(key, kind, reason)` when the value
does not decode or validate as the kind its key names (or names another resource than its key);
`AffinityChange(node, block, confirmed, problem)` for keys under `/calico/ipam/v2/host/` (a malformed value
reads as not confirmed, with the problem for the caller to log); or None for keys the graph does not follow
(other IPAM keys, Felix status, BGP, ClusterInformation, and keys whose shape cannot hold the kind, e.g. a
namespaced kind without a namespace).

Never raises: whatever bytes arrive, the graph gets one of these answers, and the reason is logged by
the caller that decides what the bad value means.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from calico.datastore.keys import IPAM_HOST_PREFIX, ResourceKey, parse_affinity_key, parse_key
from calico.resources import (
    FelixConfiguration,
    GlobalNetworkPolicy,
    GlobalNetworkSet,
    HostEndpoint,
    IPPool,
    NetworkPolicy,
    NetworkSet,
    Node,
    Profile,
    Resource,
    ResourceError,
    Tier,
    WorkloadEndpoint,
    parse_resource,
)
from calico.resources.ipam import BlockAffinity, IPAMRecordError

log = logging.getLogger(__name__)

__all__ = ["FOLLOWED_KINDS", "AffinityChange", "BadValue", "Change", "decode_update"]

FOLLOWED_KINDS: tuple[type[Resource], ...] = (
    WorkloadEndpoint,
    HostEndpoint,
    Profile,
    Tier,
    NetworkPolicy,
    GlobalNetworkPolicy,
    NetworkSet,
    GlobalNetworkSet,
    FelixConfiguration,
    Node,
    IPPool,
)
_BY_PLURAL: dict[str, type[Resource]] = {cls.PLURAL: cls for cls in FOLLOWED_KINDS}


@dataclass(frozen=True, slots=True)
class Change:
    key: ResourceKey
    kind: str
    resource: Resource | None  # None: deleted


@dataclass(frozen=True, slots=True)
class BadValue:
    key: ResourceKey
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class AffinityChange:
    node: str
    block: str  # CIDR
    confirmed: bool  # the node holds the block (state "confirmed", not deleted)
    problem: str | None = None  # the value was malformed (and reads as not confirmed)




def decode_update(path: str, value: bytes | None) -> Change | BadValue | AffinityChange | None:
    """Classify one update; see the module docstring."""
    key = parse_key(path)
    if key is None:
        return _decode_affinity(path, value) if path.startswith(IPAM_HOST_PREFIX) else None
    cls = _BY_PLURAL.get(key.plural)
    if cls is None:
        return None
    if (key.namespace is not None) != cls.NAMESPACED:
        log.debug("ignoring %s: key shape does not fit kind %s", path, cls.KIND)
        return None
    if value is None:
        return Change(key, cls.KIND, None)
    try:
        resource = _parse(cls, value)
    except (ResourceError, ValueError, TypeError, RecursionError) as exc:
        return BadValue(key, cls.KIND, str(exc))
    except Exception as exc:  # never let odd bytes take the agent down
        return BadValue(key, cls.KIND, f"{type(exc).__name__}: {exc}")
    meta = resource.metadata
    if meta.name != key.name:
        return BadValue(key, cls.KIND, f"value names {meta.name!r}, key names {key.name!r}")
    if meta.namespace is not None and meta.namespace != key.namespace:
        return BadValue(key, cls.KIND, f"value is in namespace {meta.namespace!r}, key in {key.namespace!r}")
    return Change(key, cls.KIND, resource)


# Kinds that arrive by the thousand and whose models suit `Resource.parse_json_fast` (see its docstring).
_FAST_KINDS: frozenset[type[Resource]] = frozenset({WorkloadEndpoint})


def _parse(cls: type[Resource], value: bytes) -> Resource:
    if cls in _FAST_KINDS:
        resource = cls.parse_json_fast(value)
        if resource is not None:
            return resource
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("value is not a JSON object")
    if data.get("kind") != cls.KIND:
        raise ValueError(f"value is of kind {data.get('kind')!r}, key holds {cls.KIND}")
    return parse_resource(data)


def _decode_affinity(path: str, value: bytes | None) -> AffinityChange | None:
    parsed = parse_affinity_key(path)
    if parsed is None:
        return None
    node, block = parsed
    if value is None:
        return AffinityChange(node, block, False)
    try:
        return AffinityChange(node, block, BlockAffinity.from_json(path, value).confirmed)
    except IPAMRecordError as exc:
        return AffinityChange(node, block, False, str(exc))

"""IPAM's stored records, field for field as libcalico-go keeps them under `/calico/ipam/v2/` (pure, no I/O).

In: the JSON bytes of an allocation block, a block affinity, an IPAM handle or the IPAM config, plus the key
they were read from (for error messages). Out: `AllocationBlock`, `BlockAffinity`, `IPAMHandle` and
`IPAMConfig`, whose `to_json()` writes the same JSON back. Fields this code does not know are kept and written
back unchanged, so a record that a newer Calico wrote survives our writes. A malformed value raises
`IPAMRecordError` naming the key and the field; nothing is guessed.

Records (the key layout is `calico.datastore.keys`):

* block: `cidr`, `affinity` ("host:<node>" or null), `strictAffinity`, `allocations` (per ordinal: an index into
  `attributes`, or null when free), `unallocated` (free ordinals, in the order they are handed out),
  `attributes` ([{"handle_id", "secondary": {...}}]), `sequenceNumber` (bumped on every write),
  `sequenceNumberForAllocation` ({"<ordinal>": the block's sequence number when it was allocated}), `deleted`;
* affinity: `state` (`pending` while a host claims the block, `confirmed`, `pendingDeletion` while it lets go),
  `deleted`. Readers that route or advertise (Felix, the BGP renderer) count only confirmed ones;
* handle: `block` ({"<block cidr>": addresses the handle holds there}), `deleted`; the id is the key's last part;
* config: `strict_affinity`, `auto_allocate_blocks`, `maxBlocksPerHost` (Go leaves false/0 out).

Blocks are mutable (the allocator edits a fresh copy and writes it back with a compare-and-swap); the other
records are frozen.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, ClassVar

from calico.resources.records import json_object

__all__ = [
    "AFFINITY_STATES",
    "AllocationAttribute",
    "AllocationBlock",
    "BlockAffinity",
    "IPAMConfig",
    "IPAMHandle",
    "IPAMRecordError",
    "host_affinity",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AFFINITY_PENDING = "pending"
AFFINITY_CONFIRMED = "confirmed"
AFFINITY_PENDING_DELETION = "pendingDeletion"
AFFINITY_STATES = (AFFINITY_PENDING, AFFINITY_CONFIRMED, AFFINITY_PENDING_DELETION)
_HOST_PREFIX = "host:"


class IPAMRecordError(ValueError):
    """A stored IPAM value that cannot be used; the message names the key and the field."""


@lru_cache(maxsize=4096)
def network(cidr: str) -> IPNetwork:
    """A CIDR parsed once (blocks and pools are looked at again and again)."""
    return ipaddress.ip_network(cidr)


def host_affinity(node: str) -> str:
    """The block `affinity` value naming a node."""
    return f"{_HOST_PREFIX}{node}"


def _decode(key: str, value: bytes | str) -> dict[str, Any]:
    return json_object(key, value, IPAMRecordError)


def _dump(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _bool(key: str, data: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise IPAMRecordError(f"{key}: {name} must be true or false (got {value!r})")
    return value


def _int(key: str, data: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise IPAMRecordError(f"{key}: {name} must be a non-negative integer (got {value!r})")
    return value


def _extra(data: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in known}


# --- blocks ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllocationAttribute:
    """Who holds an allocation: the handle id and secondary attributes (node, namespace, pod, type...)."""

    handle_id: str | None
    secondary: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"handle_id": self.handle_id, "secondary": dict(self.secondary)}


@dataclass(slots=True)
class AllocationBlock:
    cidr: str
    affinity: str | None
    allocations: list[int | None]
    unallocated: list[int]
    attributes: list[AllocationAttribute]
    strict_affinity: bool = False
    sequence_number: int = 0
    seq_for_allocation: dict[str, int] = field(default_factory=dict)
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN: ClassVar[frozenset[str]] = frozenset({
        "cidr", "affinity", "strictAffinity", "allocations", "unallocated", "attributes", "sequenceNumber",
        "sequenceNumberForAllocation", "deleted",
    })

    @classmethod
    def empty(cls, cidr: str, affinity: str | None) -> AllocationBlock:
        """A new block with every address free, handed out from the lowest ordinal up."""
        size = network(cidr).num_addresses
        return cls(cidr=cidr, affinity=affinity, allocations=[None] * size, unallocated=list(range(size)),
                   attributes=[])

    @property
    def network(self) -> IPNetwork:
        return network(self.cidr)

    @property
    def host(self) -> str | None:
        """The node this block is affine to, or None."""
        if self.affinity and self.affinity.startswith(_HOST_PREFIX):
            return self.affinity[len(_HOST_PREFIX):]
        return None

    def copy(self) -> AllocationBlock:
        return replace(self, allocations=list(self.allocations), unallocated=list(self.unallocated),
                       attributes=list(self.attributes), seq_for_allocation=dict(self.seq_for_allocation),
                       extra=dict(self.extra))

    @classmethod
    def from_json(cls, key: str, value: bytes | str) -> AllocationBlock:
        data = _decode(key, value)
        try:
            net = ipaddress.ip_network(data.get("cidr"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise IPAMRecordError(f"{key}: cidr {data.get('cidr')!r} is not a network") from None
        size = net.num_addresses
        affinity = data.get("affinity")
        if affinity is not None and not isinstance(affinity, str):
            raise IPAMRecordError(f"{key}: affinity must be a string or null (got {affinity!r})")
        attributes = _attributes(key, data.get("attributes"))
        allocations = data.get("allocations")
        if not isinstance(allocations, list) or len(allocations) != size:
            raise IPAMRecordError(f"{key}: allocations must be a list of {size} entries for {net}")
        for i, a in enumerate(allocations):
            if a is not None and (not isinstance(a, int) or isinstance(a, bool) or not 0 <= a < len(attributes)):
                raise IPAMRecordError(f"{key}: allocations[{i}] = {a!r} does not index attributes")
        unallocated = data.get("unallocated")
        if not isinstance(unallocated, list):
            raise IPAMRecordError(f"{key}: unallocated must be a list")
        seen: set[int] = set()
        for i, o in enumerate(unallocated):
            if not isinstance(o, int) or isinstance(o, bool) or not 0 <= o < size or o in seen:
                raise IPAMRecordError(f"{key}: unallocated[{i}] = {o!r} is not a distinct ordinal of {net}")
            if allocations[o] is not None:
                # Handing it out would give one address to two holders: refuse the whole block.
                raise IPAMRecordError(f"{key}: ordinal {o} is both allocated and listed as unallocated")
            seen.add(o)
        seqs = data.get("sequenceNumberForAllocation") or {}
        if not isinstance(seqs, dict) or not all(isinstance(v, int) for v in seqs.values()):
            raise IPAMRecordError(f"{key}: sequenceNumberForAllocation must map ordinals to integers")
        return cls(
            cidr=str(net),
            affinity=affinity,
            allocations=allocations,
            unallocated=unallocated,
            attributes=attributes,
            strict_affinity=_bool(key, data, "strictAffinity"),
            sequence_number=_int(key, data, "sequenceNumber"),
            seq_for_allocation={str(k): int(v) for k, v in seqs.items()},
            deleted=_bool(key, data, "deleted"),
            extra=_extra(data, cls._KNOWN),
        )

    def to_json(self) -> bytes:
        return _dump({
            "cidr": self.cidr,
            "affinity": self.affinity,
            "strictAffinity": self.strict_affinity,
            "allocations": self.allocations,
            "unallocated": self.unallocated,
            "attributes": [a.to_dict() for a in self.attributes],
            "deleted": self.deleted,
            "sequenceNumber": self.sequence_number,
            "sequenceNumberForAllocation": self.seq_for_allocation,
            **self.extra,
        })


def _attributes(key: str, raw: Any) -> list[AllocationAttribute]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise IPAMRecordError(f"{key}: attributes must be a list")
    out = []
    for i, a in enumerate(raw):
        if not isinstance(a, dict):
            raise IPAMRecordError(f"{key}: attributes[{i}] must be an object")
        handle = a.get("handle_id")
        secondary = a.get("secondary") or {}
        if handle is not None and not isinstance(handle, str):
            raise IPAMRecordError(f"{key}: attributes[{i}].handle_id must be a string or null")
        if not isinstance(secondary, dict) or not all(isinstance(v, str) for v in secondary.values()):
            raise IPAMRecordError(f"{key}: attributes[{i}].secondary must map names to strings")
        out.append(AllocationAttribute(handle, secondary))
    return out


# --- affinities, handles, config ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockAffinity:
    state: str
    deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN: ClassVar[frozenset[str]] = frozenset({"state", "deleted"})

    @property
    def confirmed(self) -> bool:
        return self.state == AFFINITY_CONFIRMED and not self.deleted

    @classmethod
    def from_json(cls, key: str, value: bytes | str) -> BlockAffinity:
        data = _decode(key, value)
        state = data.get("state")
        if state not in AFFINITY_STATES:
            raise IPAMRecordError(f"{key}: state {state!r} is not one of {', '.join(AFFINITY_STATES)}")
        return cls(state, _bool(key, data, "deleted"), _extra(data, cls._KNOWN))

    def to_json(self) -> bytes:
        return _dump({"state": self.state, "deleted": self.deleted, **self.extra})

    def with_state(self, state: str) -> BlockAffinity:
        return replace(self, state=state)


@dataclass(frozen=True, slots=True)
class IPAMHandle:
    """How many addresses one handle holds in each block."""

    block: Mapping[str, int] = field(default_factory=dict)
    deleted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN: ClassVar[frozenset[str]] = frozenset({"block", "deleted", "handleID"})

    @property
    def total(self) -> int:
        return sum(self.block.values())

    @classmethod
    def from_json(cls, key: str, value: bytes | str) -> IPAMHandle:
        data = _decode(key, value)
        block = data.get("block") or {}
        if not isinstance(block, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in block.values()
        ):
            raise IPAMRecordError(f"{key}: block must map block CIDRs to address counts")
        return cls(dict(block), _bool(key, data, "deleted"), _extra(data, cls._KNOWN))

    def to_json(self) -> bytes:
        return _dump({"block": dict(self.block), "deleted": self.deleted, **self.extra})

    def adjusted(self, cidr: str, delta: int) -> IPAMHandle:
        """The handle after gaining (delta > 0) or losing addresses in one block; a count of 0 drops the block."""
        counts = dict(self.block)
        n = counts.get(cidr, 0) + delta
        if n > 0:
            counts[cidr] = n
        else:
            counts.pop(cidr, None)
        return replace(self, block=counts)


@dataclass(frozen=True, slots=True)
class IPAMConfig:
    """Cluster-wide IPAM settings. When the key is absent Calico behaves as `IPAMConfig.DEFAULT`."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0  # 0: no limit
    extra: Mapping[str, Any] = field(default_factory=dict)

    _KNOWN: ClassVar[frozenset[str]] = frozenset({"strict_affinity", "auto_allocate_blocks", "maxBlocksPerHost"})

    @classmethod
    def from_json(cls, key: str, value: bytes | str) -> IPAMConfig:
        data = _decode(key, value)
        # A stored config that leaves a field out means false / 0 there (Go's omitempty), not the default.
        return cls(
            strict_affinity=_bool(key, data, "strict_affinity"),
            auto_allocate_blocks=_bool(key, data, "auto_allocate_blocks"),
            max_blocks_per_host=_int(key, data, "maxBlocksPerHost"),
            extra=_extra(data, cls._KNOWN),
        )

    def to_json(self) -> bytes:
        data: dict[str, Any] = {}
        if self.strict_affinity:
            data["strict_affinity"] = True
        if self.auto_allocate_blocks:
            data["auto_allocate_blocks"] = True
        if self.max_blocks_per_host:
            data["maxBlocksPerHost"] = self.max_blocks_per_host
        return _dump({**data, **self.extra})

"""IPAM's one door to the datastore: typed reads of IPAM records and of the resources IPAM consults, and
compare-and-swap commits (I/O).

In: a `KVStore` and, per call, a `Deadline`. Out: records with their mod revision (`Versioned`), IPPools,
IPReservations, Nodes and endpoints, and `commit()` answers: True (applied), False (a compare failed: someone
else wrote first) or None (the datastore went away after the request may have reached it: the outcome is
unknown and the caller must find out by reading).

Reads are retried with back-off while the datastore is unreachable, until the deadline (then `IPAMUnavailable`).
Writes are never retried here: only the caller knows how to recognise its own write.
A stored value that does not decode is skipped with a warning (listing) or raised as `IPAMRecordError` (a
single read), never handed on as if it were valid.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from calico.datastore import keys
from calico.datastore.kv import Compare, DatastoreUnavailable, KeyExists, KeyValue, KVStore, TxnOp
from calico.datastore.store import decode
from calico.ipam.errors import IPAMUnavailable
from calico.ipam.pools import Reservations
from calico.resources import IPPool, IPReservation, Node, Resource, ResourceError
from calico.resources.ipam import AllocationBlock, BlockAffinity, IPAMConfig, IPAMHandle, IPAMRecordError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R", bound=Resource)

BACKOFF_START = 0.05
BACKOFF_MAX = 1.0


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    value: T
    revision: int  # the key's mod revision (0: not stored)


@dataclass(frozen=True, slots=True)
class PoolView:
    pools: list[IPPool]
    revisions: dict[str, int]  # pool name -> mod revision of its key
    reservations: Reservations


class BlockEntry:
    """One listed block key: its CIDR at once, the block decoded only when asked for (a host claiming a block
    needs every CIDR that exists but only its own blocks' contents)."""

    __slots__ = ("_decoded", "_kv", "cidr", "error")

    def __init__(self, cidr: str, kv: KeyValue) -> None:
        self.cidr = cidr
        self.error = ""
        self._kv = kv
        self._decoded: Versioned[AllocationBlock] | bool | None = False  # False: not decoded yet

    @property
    def block(self) -> Versioned[AllocationBlock] | None:
        """The block, or None when the value does not decode (`error` says why)."""
        if self._decoded is False:
            try:
                self._decoded = IPAMStore.decode_block(self._kv, self.cidr)
            except IPAMRecordError as e:
                log.warning("unusable IPAM block: %s", e)
                self.error = str(e)
                self._decoded = None
        return self._decoded  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Affinity:
    node: str
    cidr: str
    record: BlockAffinity
    revision: int


class Deadline:
    """When one IPAM call gives up on an unreachable datastore."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = asyncio.get_running_loop().time() + seconds

    def left(self) -> float:
        return self.at - asyncio.get_running_loop().time()


class IPAMStore:
    def __init__(self, kv: KVStore) -> None:
        self.kv = kv
        self._decoded: dict[str, tuple[int, Resource]] = {}  # key -> (mod revision, resource): parse once

    # --- retry --------------------------------------------------------------------------------------------

    async def read(self, op: Callable[[], Awaitable[T]], deadline: Deadline, what: str) -> T:
        delay = BACKOFF_START
        while True:
            try:
                return await op()
            except DatastoreUnavailable as e:
                if deadline.left() <= 0:
                    raise IPAMUnavailable(f"{what}: datastore unreachable for {deadline.seconds:.0f}s: {e}") from e
                log.info("%s: datastore unreachable, retrying in %.2fs: %s", what, delay, e)
                await asyncio.sleep(min(delay, max(0.0, deadline.left())))
                delay = min(delay * 2, BACKOFF_MAX)

    async def commit(self, compares: Sequence[Compare], ops: Sequence[TxnOp]) -> tuple[bool | None, int]:
        """(applied?, revision): True/False, or None when the answer was lost."""
        try:
            result = await self.kv.txn(compares, ops)
        except DatastoreUnavailable as e:
            log.info("IPAM write of %s: outcome unknown (%s)", ", ".join(op.key for op in ops), e)
            return None, 0
        return result.succeeded, result.revision

    async def create(self, key: str, value: bytes) -> bool | None:
        """True: created; False: the key exists; None: outcome unknown."""
        try:
            await self.kv.create(key, value)
        except KeyExists:
            return False
        except DatastoreUnavailable as e:
            log.info("IPAM create of %s: outcome unknown (%s)", key, e)
            return None
        return True

    # --- IPAM records -------------------------------------------------------------------------------------

    async def _get(self, key: str, deadline: Deadline) -> KeyValue | None:
        return await self.read(lambda: self.kv.get(key), deadline, f"reading {key}")

    async def _list(self, prefix: str, deadline: Deadline) -> list[KeyValue]:
        kvs, _ = await self.read(lambda: self.kv.list(prefix), deadline, f"listing {prefix}")
        return kvs

    @staticmethod
    def decode_block(kv: KeyValue, cidr: str) -> Versioned[AllocationBlock]:
        block = AllocationBlock.from_json(kv.key, kv.value)
        if block.cidr != cidr:
            raise IPAMRecordError(f"{kv.key}: the block says it is {block.cidr}")
        return Versioned(block, kv.mod_revision)

    async def block(self, cidr: str, deadline: Deadline) -> Versioned[AllocationBlock] | None:
        """The block, or None when it does not exist; IPAMRecordError when it does not decode."""
        kv = await self._get(keys.block_key(cidr), deadline)
        return None if kv is None else self.decode_block(kv, str(ipaddress.ip_network(cidr)))

    async def blocks(self, deadline: Deadline, version: int | None = None) -> list[Versioned[AllocationBlock]]:
        return [e.block for e in await self.block_entries(deadline, version) if e.block is not None]

    async def block_entries(self, deadline: Deadline, version: int | None = None) -> list[BlockEntry]:
        """Every block key, decoded lazily (see BlockEntry)."""
        out = []
        for kv in await self._list(keys.block_prefix(version), deadline):
            cidr = keys.parse_block_key(kv.key)
            if cidr is not None:
                out.append(BlockEntry(cidr, kv))
        return out

    async def affinities(self, deadline: Deadline, node: str | None = None) -> list[Affinity]:
        out = []
        for kv in await self._list(keys.host_affinity_prefix(node), deadline):
            parsed = keys.parse_affinity_key(kv.key)
            if parsed is None:
                continue
            try:
                out.append(Affinity(parsed[0], parsed[1], BlockAffinity.from_json(kv.key, kv.value), kv.mod_revision))
            except IPAMRecordError as e:
                log.warning("unusable block affinity: %s", e)
        return out

    async def affinity(self, node: str, cidr: str, deadline: Deadline) -> Affinity | None:
        kv = await self._get(keys.affinity_key(node, cidr), deadline)
        if kv is None:
            return None
        return Affinity(node, cidr, BlockAffinity.from_json(kv.key, kv.value), kv.mod_revision)

    async def handle(self, handle_id: str, deadline: Deadline) -> Versioned[IPAMHandle] | None:
        kv = await self._get(keys.handle_key(handle_id), deadline)
        return None if kv is None else Versioned(IPAMHandle.from_json(kv.key, kv.value), kv.mod_revision)

    async def handles(self, deadline: Deadline) -> dict[str, Versioned[IPAMHandle]]:
        out = {}
        for kv in await self._list(keys.IPAM_HANDLE_PREFIX, deadline):
            handle_id = keys.parse_handle_key(kv.key)
            if handle_id is None:
                continue
            try:
                out[handle_id] = Versioned(IPAMHandle.from_json(kv.key, kv.value), kv.mod_revision)
            except IPAMRecordError as e:
                log.warning("unusable IPAM handle: %s", e)
        return out

    async def config(self, deadline: Deadline) -> Versioned[IPAMConfig]:
        kv = await self._get(keys.IPAM_CONFIG_KEY, deadline)
        if kv is None:
            return Versioned(IPAMConfig(), 0)
        return Versioned(IPAMConfig.from_json(kv.key, kv.value), kv.mod_revision)

    # --- resources IPAM consults --------------------------------------------------------------------------

    def _decode(self, kv: KeyValue) -> Resource | None:
        hit = self._decoded.get(kv.key)
        if hit is not None and hit[0] == kv.mod_revision:
            return hit[1]
        try:
            res = decode(kv)
        except (ResourceError, ValueError) as e:
            log.warning("IPAM ignores a malformed resource at %s: %s", kv.key, e)
            return None
        self._decoded[kv.key] = (kv.mod_revision, res)
        return res

    async def resources(self, cls: type[R], deadline: Deadline) -> list[R]:
        out = []
        for kv in await self._list(keys.kind_prefix(cls.PLURAL), deadline):
            res = self._decode(kv)
            if isinstance(res, cls):
                out.append(res)
        return out

    async def pools(self, deadline: Deadline) -> list[IPPool]:
        return await self.resources(IPPool, deadline)

    async def reservations(self, deadline: Deadline) -> Reservations:
        return Reservations.of(await self.resources(IPReservation, deadline))

    async def pool_view(self, deadline: Deadline) -> PoolView:
        """IPPools (with their mod revisions) and IPReservations, from one range read: their keys share the prefix
        `.../ip` (`ippools/`, `ipreservations/`) and an assignment needs both, so one round trip instead of two.
        Other kinds under the prefix are told apart by their plural and dropped."""
        pools: list[IPPool] = []
        revisions: dict[str, int] = {}
        reserved: list[IPReservation] = []
        for kv in await self._list(f"{keys.RESOURCE_PREFIX}ip", deadline):
            key = keys.parse_key(kv.key)
            if key is None or key.plural not in (IPPool.PLURAL, IPReservation.PLURAL):
                continue
            res = self._decode(kv)
            if isinstance(res, IPPool):
                pools.append(res)
                revisions[res.metadata.name] = kv.mod_revision
            elif isinstance(res, IPReservation):
                reserved.append(res)
        return PoolView(pools, revisions, Reservations.of(reserved))

    async def mod_revision(self, key: str, deadline: Deadline) -> int:
        kv = await self._get(key, deadline)
        return 0 if kv is None else kv.mod_revision

    async def node(self, name: str, deadline: Deadline) -> Node | None:
        kv = await self._get(keys.ResourceKey(Node.PLURAL, name).path(), deadline)
        res = None if kv is None else self._decode(kv)
        return res if isinstance(res, Node) else None

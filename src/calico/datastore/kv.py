"""The revisioned key-value contract every datastore backend implements.

Keys are `str` (etcd-style paths such as `/calico/resources/v3/...`), values are `bytes`.
Every write gets a cluster-wide, strictly increasing revision, as in etcd v3.
Backends: `calico.datastore.etcd.EtcdKV` (etcd v3) and `calico.datastore.embedded.EmbeddedKV` (SQLite file).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass


class KVError(Exception):
    """Base of every datastore error."""


class KeyExists(KVError):
    """`create` found the key already present."""


class KeyNotFound(KVError):
    """`update`/`delete` found no such key."""


class RevisionMismatch(KVError):
    """A compare-and-swap saw a different mod revision than expected."""


class ResyncNeeded(KVError):
    """A watch cannot continue without a gap (compaction, lost connection): list again and re-watch."""


class DatastoreUnavailable(KVError):
    """The backend cannot be reached (connection refused, timeout)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int = 0


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes | None  # None for DELETE
    mod_revision: int  # the revision of this change


# --- transactions: a list of comparisons, then ops run only if all hold ----------------------------


@dataclass(frozen=True, slots=True)
class Compare:
    """Holds when `key`'s mod revision equals `mod_revision` (0 means "key absent")."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


TxnOp = Put | Delete


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int  # store revision after the txn (or current revision if it failed)


class KVStore(abc.ABC):
    """Async revisioned key-value store. All methods may raise `DatastoreUnavailable`."""

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None: ...

    @abc.abstractmethod
    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """All keys under `prefix`, sorted by key, and the store revision the list is consistent at."""

    @abc.abstractmethod
    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        """Write a new key; raises `KeyExists`. Returns the new revision."""

    @abc.abstractmethod
    async def update(self, key: str, value: bytes, mod_revision: int | None = None, lease: int = 0) -> int:
        """Overwrite an existing key; raises `KeyNotFound`, or `RevisionMismatch` when `mod_revision`
        is given and differs. Returns the new revision."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional create-or-overwrite. Returns the new revision."""

    @abc.abstractmethod
    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        """Remove a key; raises `KeyNotFound`, or `RevisionMismatch`. Returns the new revision."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], ops: Sequence[TxnOp]) -> TxnResult:
        """Atomically: if every compare holds, apply every op (one revision for all)."""

    @abc.abstractmethod
    async def grant_lease(self, ttl: float) -> int:
        """A new lease id; keys written with it vanish (with DELETE events) `ttl` s after the last refresh."""

    @abc.abstractmethod
    async def refresh_lease(self, lease: int) -> None:
        """Restart the lease's TTL; raises `KeyNotFound` when it has expired or never existed."""

    @abc.abstractmethod
    async def revoke_lease(self, lease: int) -> None:
        """End a lease now, deleting its keys."""

    @abc.abstractmethod
    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        """Events under `prefix` with revision >= `start_revision`, in revision order, batched.

        Raises `ResyncNeeded` (from the iterator) when the history from `start_revision` is compacted
        away or the connection was lost; never hangs silently on a dead connection."""

    @abc.abstractmethod
    async def revision(self) -> int:
        """The store's current revision."""

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Drop history older than `revision` (watches from before it then raise `ResyncNeeded`)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> KVStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

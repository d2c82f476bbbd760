"""A real KVStore wrapped so that writes lose their answers: the faults an etcd client sees when a member dies.

Each scheduled fault applies to the next write (`txn` or `create`):
- "after": the write is applied, then `DatastoreUnavailable` is raised (the answer was lost on the way back);
- "before": nothing is applied and `DatastoreUnavailable` is raised (the request never arrived);
- "late": `DatastoreUnavailable` is raised at once and the write is applied later, just before the client's next
  write (it was still in flight in the cluster when the client read to find out, and landed before the client
  sent its next request), unless its compares no longer hold by then.
`down` (from `FlakyKV`) makes every read raise `DatastoreUnavailable` (an outage) until cleared.
"""

from __future__ import annotations

import contextlib
from collections.abc import Coroutine, Sequence

from calico.datastore.kv import Compare, DatastoreUnavailable, KVError, KVStore, TxnOp, TxnResult
from tests.helpers.flaky_kv import FlakyKV


class LossyKV(FlakyKV):
    def __init__(self, real: KVStore) -> None:
        super().__init__(real)
        self.faults: list[str] = []
        self.injected = 0
        self._late: list[Coroutine[object, object, object]] = []

    async def _fault(self, apply: Coroutine[object, object, object]) -> None:
        kind = self.faults.pop(0)
        self.injected += 1
        if kind == "after":
            with contextlib.suppress(KVError):  # whatever it answered is lost too
                await apply
        elif kind == "late":
            self._late.append(apply)
        else:
            apply.close()
        raise DatastoreUnavailable(f"injected: answer lost ({kind})")

    async def settle(self) -> None:
        """Let every late write land (or fail its compares)."""
        late, self._late = self._late, []
        for apply in late:
            with contextlib.suppress(KVError):
                await apply

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        await self.settle()
        if self.faults:
            await self._fault(self.real.create(key, value, lease))
        return await self.real.create(key, value, lease)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[TxnOp]) -> TxnResult:
        await self.settle()
        if self.faults:
            await self._fault(self.real.txn(compares, ops))
        return await self.real.txn(compares, ops)

    async def close(self) -> None:
        await self.settle()
        await super().close()

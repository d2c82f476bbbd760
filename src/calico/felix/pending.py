"""Staged policies for Felix's flow logs: whether any exist, and the pending verdict of flows when they do.

Enters: the syncer's updates (`on_update`: only staged policy keys are kept, as names) and, at a flow-log
flush, the flows to judge. Leaves: each flow's pending verdict (`calico.explain.trace.Verdict`: what it would
get with the staged policies in force), computed with the same calculation as `calicoctl explain` from one
read of the datastore per flush, and only while some staged policy exists (otherwise no read at all).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from calico.datastore.keys import RESOURCE_PREFIX
from calico.datastore.kv import KVStore
from calico.explain.flow import Flow
from calico.explain.pending import pending_verdicts
from calico.explain.snapshot import read
from calico.explain.trace import Verdict
from calico.resources import STAGED_KINDS

_STAGED_PREFIXES = tuple(f"{RESOURCE_PREFIX}{cls.PLURAL}/" for cls in STAGED_KINDS)


class PendingVerdicts:
    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        self._staged: set[str] = set()

    def on_update(self, key: str, value: bytes | None) -> None:
        if key.startswith(_STAGED_PREFIXES):
            if value is None:
                self._staged.discard(key)
            else:
                self._staged.add(key)

    @property
    def active(self) -> bool:
        return bool(self._staged)

    async def verdicts(self, flows: Iterable[Flow]) -> dict[Flow, Verdict]:
        """{} when nothing is staged. The calculation runs in a worker thread: the agent's loop never waits."""
        if not self._staged:
            return {}
        snapshot = await read(self._kv)
        wanted = list(flows)
        return await asyncio.to_thread(pending_verdicts, snapshot, wanted)

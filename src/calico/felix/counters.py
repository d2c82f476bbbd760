"""Felix reads its verdict rules' kernel counters and publishes them: Prometheus and the datastore.

Enters: the dataplane driver's `read_counters()` (`calico.dataplane.counters.RawCount`s: one kernel read), and
the policies and profiles the dataplane knows (to name hashed identities back, `ruleids.OwnerIndex`).
Leaves: `PolicyCounters.snapshot`, monotonic packets and bytes per rule identity (`ruleids.RuleID`), which the
metrics collector (`calico.felix.metrics`) exports; and `CounterPublisher`, which writes the snapshot under
Felix's status key `.../host/<hostname>/policy_counters` (`counter_status`) when it changed, at most every
CountersReportingIntervalSecs.

Cost is bounded: a read is one kernel listing (nft: `list counters`; iptables: `iptables-save -c` per family
and table), done at the refresh (IptablesRefreshInterval), by the publisher, and on a scrape only when the last
read is older than SCRAPE_MAX_AGE; concurrent callers wait for the one read in flight. A failed read keeps the
last snapshot (logged, counted in felix_rule_counter_read_errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable

from calico.dataplane import ruleids as rid
from calico.dataplane.counters import CounterTotals, RawCount
from calico.datastore.kv import KeyNotFound, KVError, KVStore
from calico.felix.counter_status import counters_key, encode_counters

log = logging.getLogger(__name__)

__all__ = ["SCRAPE_MAX_AGE", "CounterPublisher", "PolicyCounters", "Snapshot"]

SCRAPE_MAX_AGE = 1.0  # seconds a scrape may reuse the last read
READ_TIMEOUT = 20.0

Snapshot = dict[rid.RuleID, tuple[int, int]]


class PolicyCounters:
    def __init__(
        self,
        read: Callable[[], Awaitable[list[RawCount]]],
        owners: Callable[[], rid.OwnerIndex] = rid.OwnerIndex,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._owners = owners
        self._clock = clock
        self._totals = CounterTotals()
        self._lock = asyncio.Lock()
        self._bad: set[str] = set()  # identities that did not decode (logged once each)
        self.snapshot: Snapshot = {}
        self.read_at: float | None = None
        self.reads = 0
        self.errors = 0

    async def refresh(self, max_age: float = 0.0) -> Snapshot:
        """The snapshot, read again from the kernel unless the last read is at most `max_age` seconds old."""
        async with self._lock:
            if self.read_at is not None and self._clock() - self.read_at < max_age:
                return self.snapshot
            try:
                raw = await asyncio.wait_for(self._read(), READ_TIMEOUT)
            except Exception as e:  # a tool failed or timed out: keep what we had, try again next time
                self.errors += 1
                log.warning("reading the rule counters failed (%s); keeping the last values", e)
                return self.snapshot
            self.snapshot = self._decode(self._totals.update(raw))
            self.read_at = self._clock()
            self.reads += 1
            return self.snapshot

    def _decode(self, totals: dict[str, tuple[int, int]]) -> Snapshot:
        out: Snapshot = {}
        owners: rid.OwnerIndex | None = None
        for text, (packets, nbytes) in totals.items():
            try:
                r = rid.decode(text)
            except ValueError:
                if text not in self._bad:
                    self._bad.add(text)
                    log.warning("kernel counter %r is not a rule identity; left out", text)
                continue
            if r.hashed:
                owners = owners or self._owners()
                r = owners.resolve(r)
            p, b = out.get(r, (0, 0))
            out[r] = (p + packets, b + nbytes)
        return out


class CounterPublisher:
    """Writes the host's counters into the datastore (leased), when they changed, every `interval` seconds."""

    def __init__(
        self,
        kv: KVStore,
        hostname: str,
        counters: PolicyCounters,
        *,
        region: str = "no-region",
        interval: float = 5.0,
        ttl: float = 90.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.key = counters_key(hostname, region)
        self.counters = counters
        self.interval = interval
        self.ttl = ttl
        self._wall = wall_clock
        self._lease = 0
        self._written: bytes | None = None  # the last value written, without its time
        self._lease_written = 0  # ... and the lease it was written with (a new lease needs a new write)
        self._settings_changed = asyncio.Event()
        self.writes = 0

    def reconfigure(self, *, interval: float, ttl: float) -> None:
        self.interval, self.ttl = interval, ttl
        self._lease = 0  # a new TTL needs a new lease
        self._written = None
        self._settings_changed.set()

    async def run(self) -> None:
        while True:
            self._settings_changed.clear()
            if self.interval > 0:
                await self.publish_once()
            else:
                await self._remove()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settings_changed.wait(), self.interval if self.interval > 0 else None)

    async def publish_once(self) -> bool:
        """Read (unless a read is fresh enough) and write if anything changed; False on a datastore error."""
        snapshot = await self.counters.refresh(max_age=self.interval / 2)
        body = encode_counters("", snapshot)
        try:
            lease = await self._keep_lease()
            if body == self._written and lease == self._lease_written:
                return True
            now = datetime.datetime.fromtimestamp(self._wall(), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            await self.kv.put(self.key, encode_counters(now, snapshot), lease=lease)
        except Exception as e:  # KVError or a client library's own: never end the publisher
            if not isinstance(e, KVError):
                log.debug("policy counters write error", exc_info=True)
            log.warning("writing the policy counters failed (%s); retrying in %.0fs", e, self.interval)
            self._lease = 0
            return False
        self._written, self._lease_written = body, lease
        self.writes += 1
        return True

    async def _keep_lease(self) -> int:
        if self.ttl <= 0:
            return 0
        if self._lease:
            try:
                await self.kv.refresh_lease(self._lease)
                return self._lease
            except KeyNotFound:
                log.info("policy counters lease %x expired; taking a new one", self._lease)
        self._lease = await self.kv.grant_lease(max(self.ttl, 3 * self.interval))
        return self._lease

    async def _remove(self) -> None:
        if self._written is None:
            return
        with contextlib.suppress(KeyNotFound, KVError):
            await self.kv.delete(self.key)
        self._written = None

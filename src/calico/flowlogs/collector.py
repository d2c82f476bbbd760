"""Felix's flow log collector: logged packets and conntrack in, one JSON record per flow per interval out.

Enters: the kernel's NFLOG group (each verdict rule's twin logs there with its identity as the prefix:
`calico.dataplane.config.FlowLogRules`), conntrack (polled every `conntrack_interval` seconds, in a worker thread),
the endpoint lookup (`endpoints.EndpointIndex.lookup`) and hashed identities' owners. Leaves: every
`flush_interval` seconds (Calico's FlowLogsFlushInterval), the interval's records to the JSON-lines file and the
unix socket (`outputs`), and `stats` (Felix exports them as felix_flowlogs_*).

Never stalls the agent: a readable socket is drained at most BATCH messages per event-loop turn, and at most
`max_events_per_second` a second; past that the collector stops reading until the next second and the kernel
drops what does not fit in the socket's buffer (counted as overflows). The kernel side is rate-limited already
(FlowLogRules.rate), so in the normal case neither limit is reached. Flows past `max_flows` are dropped and
counted. A collector that cannot open its socket (no NFLOG support, the group taken) logs it and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from calico.dataplane import ruleids as rid
from calico.dataplane.netlink.commands import enable_conntrack_accounting
from calico.flowlogs.aggregator import FlowAggregator
from calico.flowlogs.nfnetlink import NflogSocket, dump_conntrack
from calico.flowlogs.outputs import JsonLinesFile, SocketServer
from calico.flowlogs.records import Endpoint, FlowRecord

log = logging.getLogger(__name__)

BATCH = 256  # messages per event-loop turn
RETRY = 5.0


@dataclass(frozen=True, slots=True)
class FlowLogSettings:
    group: int = 1
    flush_interval: float = 300.0
    file_directory: str | None = "/var/log/calico/flowlogs"  # None: no file
    max_file_bytes: int = 100 << 20
    max_files: int = 5
    socket_path: str | None = None  # None: no socket
    max_flows: int = 100_000
    max_events_per_second: int = 20_000
    conntrack_interval: float = 10.0


@dataclass(slots=True)
class FlowLogStats:
    events: int = 0  # logged packets processed
    dropped_flows: int = 0  # logged packets of flows past max_flows
    unreadable: int = 0  # messages that were not a packet with a rule identity
    kernel_overflows: int = 0  # times the kernel dropped messages for us (each: one or more)
    read_pauses: int = 0  # times reading stopped for the rest of a second (max_events_per_second)
    records: int = 0
    flushes: int = 0
    conntrack_errors: int = 0
    socket_dropped: int = 0  # lines a slow socket client missed


class FlowLogCollector:
    def __init__(
        self,
        settings: FlowLogSettings,
        hostname: str,
        lookup: Callable[[str], Endpoint],
        owners: Callable[[], rid.OwnerIndex] = rid.OwnerIndex,
        netns: str | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        pending: Callable[[list[FlowRecord]], Awaitable[list[FlowRecord]]] | None = None,
    ) -> None:
        self.settings = settings
        self.hostname = hostname
        self.lookup = lookup
        self.owners = owners
        self.netns = netns
        self.clock = clock
        self.monotonic = monotonic  # the per-second budget's clock
        self.pending = pending  # adds the pending verdict (staged policies) to the interval's records
        self.stats = FlowLogStats()
        self.aggregator = FlowAggregator(settings.max_flows, clock())
        self.file = JsonLinesFile(settings.file_directory, settings.max_file_bytes, settings.max_files) \
            if settings.file_directory else None
        self.server = SocketServer(settings.socket_path) if settings.socket_path else None
        self.nflog: NflogSocket | None = None
        self._rules: dict[str, rid.RuleID | None] = {}  # prefix -> identity (None: not one)
        self._window = 0
        self._window_events = 0
        self._paused = False
        self.ready = asyncio.Event()  # the NFLOG socket is bound

    # --- running ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled; a cancel flushes what the interval holds first."""
        loop = asyncio.get_running_loop()
        try:
            if self.server is not None:
                await self.server.start()
            await enable_conntrack_accounting(self.netns)
            while self.nflog is None:
                try:
                    self.nflog = await loop.run_in_executor(None, NflogSocket, self.settings.group, self.netns)
                except OSError as e:
                    log.error("flow logs: cannot read NFLOG group %d (%s); retrying in %.0fs",
                              self.settings.group, e, RETRY)
                    await asyncio.sleep(RETRY)
            loop.add_reader(self.nflog.fileno(), self._on_readable)
            self.ready.set()
            next_flush = time.monotonic() + self.settings.flush_interval
            next_poll = time.monotonic() + min(self.settings.conntrack_interval, self.settings.flush_interval)
            while True:
                await asyncio.sleep(max(0.0, min(next_flush, next_poll) - time.monotonic()))
                if time.monotonic() >= next_flush:
                    await self.flush()
                    next_flush += self.settings.flush_interval
                    next_poll = time.monotonic() + self.settings.conntrack_interval
                elif time.monotonic() >= next_poll:
                    await self.poll_conntrack()
                    next_poll += self.settings.conntrack_interval
        finally:
            await self._close()

    async def _close(self) -> None:
        if self.nflog is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.nflog.fileno())
            self._on_readable()  # what is queued already
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())
            self.nflog.close()
            self.nflog = None
        if self.server is not None:
            await self.server.close()

    # --- logged packets --------------------------------------------------------------------------------

    def _identity(self, prefix: str) -> rid.RuleID | None:
        if prefix in self._rules:
            return self._rules[prefix]
        try:
            r: rid.RuleID | None = rid.decode(prefix)
        except ValueError:
            r = None
        if r is not None and r.hashed:
            resolved = self.owners().resolve(r)
            if resolved.hashed:
                return resolved  # not known yet: ask again next time
            r = resolved
        if len(self._rules) > 100_000:
            self._rules.clear()
        self._rules[prefix] = r
        return r

    def _on_readable(self) -> None:
        nflog = self.nflog
        if nflog is None or self._paused:
            return
        second = int(self.monotonic())
        if second != self._window:
            self._window, self._window_events = second, 0
        room = self.settings.max_events_per_second - self._window_events
        if room <= 0:
            self._pause()
            return
        batch = nflog.read_batch(min(BATCH, room))
        self._window_events += len(batch)
        now = self.clock()
        for packet in batch:
            rule = self._identity(packet.prefix)
            if rule is None:
                self.stats.unreadable += 1
            elif self.aggregator.add(now, rule, packet.key, packet.length):
                self.stats.events += 1
            else:
                self.stats.dropped_flows += 1
        self.stats.kernel_overflows = nflog.overflows
        self.stats.unreadable += nflog.unparsed
        nflog.unparsed = 0

    def _pause(self) -> None:
        """Stop reading for the rest of this second (the kernel drops what overflows its buffer meanwhile)."""
        nflog = self.nflog
        if nflog is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(nflog.fileno())
        self._paused = True
        self.stats.read_pauses += 1

        def resume() -> None:
            self._paused = False
            if self.nflog is not None:
                loop.add_reader(self.nflog.fileno(), self._on_readable)

        loop.call_later(max(0.01, self._window + 1 - self.monotonic()), resume)

    # --- conntrack and flushing ------------------------------------------------------------------------

    async def poll_conntrack(self) -> None:
        try:
            entries = await asyncio.get_running_loop().run_in_executor(None, dump_conntrack, self.netns)
        except OSError as e:
            self.stats.conntrack_errors += 1
            log.warning("flow logs: reading conntrack failed (%s); counts come from the logged packets", e)
            return
        self.aggregator.conntrack(entries)

    async def flush(self) -> int:
        """End the interval: records to the file and the socket; how many were written."""
        await self.poll_conntrack()
        records = self.aggregator.flush(self.clock(), self.hostname, self.lookup)
        self.stats.flushes += 1
        self.stats.dropped_flows += self.aggregator.dropped
        self.aggregator.dropped = 0
        if not records:
            return 0
        if self.pending is not None:
            try:
                records = await self.pending(records)
            except Exception as e:  # the records go out regardless, without a pending verdict
                log.warning("flow logs: the pending verdicts failed (%s)", e)
        lines = [r.to_json() for r in records]
        if self.file is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.file.write, lines)
            except OSError as e:
                log.error("flow logs: writing %s failed (%s); %d records lost", self.file.path, e, len(lines))
        if self.server is not None:
            self.server.publish(lines)
            self.stats.socket_dropped = self.server.dropped
        self.stats.records += len(records)
        return len(records)

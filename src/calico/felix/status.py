"""Felix's status reports into the datastore.

Enters: a `KVStore`, this host's name, the reporting settings, and (for endpoint status) a callable that
returns the current status of each local workload endpoint, or None while there is nothing trustworthy
to report yet (before the first in-sync apply).
Leaves, under `/calico/felix/v2/<region>/host/<hostname>/` (region "no-region" unless OpenstackRegion):

- `status`: JSON {"time": RFC 3339 UTC, "uptime": seconds, "first_update": bool}, written every
  ReportingIntervalSecs with a lease of ReportingTTLSecs, so the key vanishes once Felix stops reporting;
- `last_reported_status`: the same JSON without a lease, so the last report stays readable;
- with EndpointReportingEnabled, `workload/<orchestrator>/<workload>/endpoint/<endpoint>`: JSON
  {"status": "up" | "down" | "error"}. Changes are coalesced: one round every EndpointReportingDelaySecs
  writes each changed endpoint once with its latest status and deletes the keys of endpoints that went
  away; the first round also deletes this host's leftovers from an earlier run. Turning reporting off
  deletes what was written.

Datastore errors are logged and retried at the next tick; they never end the reporter.
ReportingIntervalSecs 0 turns the liveness report off; ReportingTTLSecs 0 writes it without a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from calico.datastore.keys import FELIX_STATUS_PREFIX
from calico.datastore.kv import KeyNotFound, KVError, KVStore

log = logging.getLogger(__name__)

__all__ = ["EndpointStatusID", "StatusReporter", "endpoint_status_key", "host_prefix"]

ENDPOINT_POLL_MAX = 1.0  # endpoint status is re-read at least this often even when nobody pokes


class EndpointStatusID(NamedTuple):
    """How Calico names a workload endpoint in its status keys."""

    orchestrator: str
    workload: str
    endpoint: str


def _escape(segment: str) -> str:
    # A key segment must not contain "/" (a Kubernetes workload is "namespace/pod"); Calico escapes it.
    return segment.replace("%", "%25").replace("/", "%2f")


def host_prefix(hostname: str, region: str = "no-region") -> str:
    return f"{FELIX_STATUS_PREFIX}{region}/host/{hostname}/"


def endpoint_status_key(hostname: str, eid: EndpointStatusID, region: str = "no-region") -> str:
    return (
        f"{host_prefix(hostname, region)}workload/{_escape(eid.orchestrator)}/{_escape(eid.workload)}"
        f"/endpoint/{_escape(eid.endpoint)}"
    )


EndpointSource = Callable[[], Mapping[EndpointStatusID, str] | None]


class StatusReporter:
    """Run with `await run()` (until cancelled); change settings live with `reconfigure()`."""

    def __init__(
        self,
        kv: KVStore,
        hostname: str,
        *,
        region: str = "no-region",
        interval: float = 30.0,
        ttl: float = 90.0,
        endpoint_reporting: bool = False,
        endpoint_delay: float = 1.0,
        endpoint_source: EndpointSource | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kv = kv
        self.hostname = hostname
        self.prefix = host_prefix(hostname, region)
        self.region = region
        self.interval = interval
        self.ttl = ttl
        self.endpoint_reporting = endpoint_reporting
        self.endpoint_delay = endpoint_delay
        self.endpoint_source = endpoint_source
        self._wall = wall_clock
        self._clock = clock
        self._started = clock()
        self._lease = 0
        self._lease_ttl = 0.0
        self._first = True
        self._written: dict[str, str] = {}  # endpoint status key -> status last written
        self._cleaned = False  # leftovers of an earlier run deleted
        self._poke = asyncio.Event()
        self._settings_changed = asyncio.Event()
        self.reports = 0  # successful status reports, for tests and debugging

    # --- control ----------------------------------------------------------------------------------

    def reconfigure(self, *, interval: float, ttl: float, endpoint_reporting: bool, endpoint_delay: float) -> None:
        self.interval, self.ttl = interval, ttl
        self.endpoint_reporting, self.endpoint_delay = endpoint_reporting, endpoint_delay
        self._settings_changed.set()
        self._poke.set()

    def poke(self) -> None:
        """Endpoint status may have changed (the dataplane applied something): look soon."""
        self._poke.set()

    async def run(self) -> None:
        await asyncio.gather(self._status_loop(), self._endpoint_loop())

    # --- liveness report --------------------------------------------------------------------------

    @property
    def status_key(self) -> str:
        return self.prefix + "status"

    @property
    def last_reported_key(self) -> str:
        return self.prefix + "last_reported_status"

    async def _status_loop(self) -> None:
        while True:
            self._settings_changed.clear()
            if self.interval > 0:
                await self.report_once()
                timeout: float | None = self.interval
            else:
                timeout = None  # reporting off: wait for a reconfigure
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settings_changed.wait(), timeout)

    def _status_json(self) -> bytes:
        now = datetime.datetime.fromtimestamp(self._wall(), datetime.UTC)
        return json.dumps(
            {
                "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "uptime": round(self._clock() - self._started, 3),
                "first_update": self._first,
            }
        ).encode()

    async def _lease_for_report(self) -> int:
        if self.ttl <= 0:
            return 0
        if self._lease and self._lease_ttl == self.ttl:
            try:
                await self.kv.refresh_lease(self._lease)
                return self._lease
            except KeyNotFound:
                log.info("status lease %x expired; taking a new one", self._lease)
        self._lease = await self.kv.grant_lease(self.ttl)
        self._lease_ttl = self.ttl
        return self._lease

    async def report_once(self) -> bool:
        """Write `status` (with the lease) and `last_reported_status`; False (logged) on a datastore error."""
        value = self._status_json()
        try:
            lease = await self._lease_for_report()
            try:
                await self.kv.put(self.status_key, value, lease=lease)
            except KeyNotFound:  # the lease expired between refresh and put
                self._lease = 0
                await self.kv.put(self.status_key, value, lease=await self._lease_for_report())
            await self.kv.put(self.last_reported_key, value)
        except Exception as e:  # KVError, or a client library's own error: never end the reporter
            if not isinstance(e, KVError):
                log.debug("status report error", exc_info=True)
            log.warning("status report to the datastore failed (%s); retrying in %.0fs", e, self.interval)
            return False
        self._first = False
        self.reports += 1
        return True

    # --- endpoint status --------------------------------------------------------------------------

    async def _endpoint_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), max(self.endpoint_delay, ENDPOINT_POLL_MAX))
            self._poke.clear()
            try:
                await self.endpoint_round()
            except Exception:  # e.g. the endpoint source failed: report again next round
                log.exception("endpoint status round failed")
            # The rate limit: at most one round, so one write per endpoint, per delay.
            await asyncio.sleep(self.endpoint_delay)

    async def endpoint_round(self) -> None:
        if not self.endpoint_reporting:
            if self._written:
                await self._sync_endpoints({})
            self._cleaned = False  # when turned on again, look for leftovers again
            return
        current = self.endpoint_source() if self.endpoint_source is not None else None
        if current is None:
            return  # not in sync yet: writing now could delete statuses that are still true
        wanted = {endpoint_status_key(self.hostname, eid, self.region): status for eid, status in current.items()}
        await self._sync_endpoints(wanted)

    async def _sync_endpoints(self, wanted: Mapping[str, str]) -> None:
        try:
            if not self._cleaned and self.endpoint_reporting:
                kvs, _ = await self.kv.list(self.prefix + "workload/")
                for kv in kvs:
                    if kv.key not in wanted:
                        await self._delete(kv.key)
                    else:
                        self._written[kv.key] = _status_of(kv.value)
                self._cleaned = True
            for key, status in wanted.items():
                if self._written.get(key) != status:
                    await self.kv.put(key, json.dumps({"status": status}).encode())
                    self._written[key] = status
            for key in [k for k in self._written if k not in wanted]:
                await self._delete(key)
                del self._written[key]
        except KVError as e:
            log.warning("endpoint status write failed (%s); retrying in %.1fs", e, self.endpoint_delay)

    async def _delete(self, key: str) -> None:
        with contextlib.suppress(KeyNotFound):
            await self.kv.delete(key)


def _status_of(value: bytes) -> str:
    try:
        doc = json.loads(value)
    except ValueError:
        return ""
    return str(doc.get("status", "")) if isinstance(doc, dict) else ""

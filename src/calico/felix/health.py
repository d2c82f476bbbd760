"""Health aggregation and the `/liveness` and `/readiness` endpoints.

Enters: reports from the agent's parts. Each part registers a reporter (name, whether it reports
liveness and/or readiness, a timeout) and calls `report(live=..., ready=...)` at least once per timeout.
Leaves: `HealthAggregator.summary()`, and HTTP answers on HealthHost:HealthPort: 200 when every reporter
that reports that aspect said yes within its timeout, else 503; the body is JSON naming each reporter.

A reporter that has never reported, or whose last report is older than its timeout, counts as neither
live nor ready; timeout 0 means its reports never go stale. With no reporters at all, both are 200.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from calico.felix.httpserver import HttpServer, Response

__all__ = ["HealthAggregator", "HealthReporter", "HealthSummary", "health_server"]


class HealthReporter:
    """One part's health; created by `HealthAggregator.register`."""

    def __init__(self, name: str, reports_live: bool, reports_ready: bool, timeout: float,
                 clock: Callable[[], float]) -> None:
        self.name = name
        self.reports_live = reports_live
        self.reports_ready = reports_ready
        self.timeout = timeout
        self._clock = clock
        self._live = False
        self._ready = False
        self._at: float | None = None

    def report(self, *, live: bool, ready: bool) -> None:
        self._live, self._ready, self._at = live, ready, self._clock()

    def stale(self) -> bool:
        if self._at is None:
            return True
        return self.timeout > 0 and self._clock() - self._at > self.timeout

    @property
    def live(self) -> bool:
        return self._live and not self.stale()

    @property
    def ready(self) -> bool:
        return self._ready and not self.stale()


@dataclass(frozen=True, slots=True)
class HealthSummary:
    live: bool
    ready: bool
    reporters: tuple[dict[str, object], ...]

    def to_json(self) -> bytes:
        return json.dumps(
            {"live": self.live, "ready": self.ready, "reporters": list(self.reporters)}, sort_keys=True
        ).encode()


class HealthAggregator:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reporters: dict[str, HealthReporter] = {}

    def register(self, name: str, *, live: bool = True, ready: bool = True, timeout: float = 0.0) -> HealthReporter:
        """A new reporter (re-registering a name replaces the old one)."""
        rep = HealthReporter(name, live, ready, timeout, self._clock)
        self._reporters[name] = rep
        return rep

    def summary(self) -> HealthSummary:
        reps = sorted(self._reporters.values(), key=lambda r: r.name)
        return HealthSummary(
            live=all(r.live for r in reps if r.reports_live),
            ready=all(r.ready for r in reps if r.reports_ready),
            reporters=tuple(
                {
                    "name": r.name,
                    "live": r.live if r.reports_live else None,
                    "ready": r.ready if r.reports_ready else None,
                    "stale": r.stale(),
                    "timeout": r.timeout,
                }
                for r in reps
            ),
        )

    def _answer(self, aspect: str) -> Response:
        s = self.summary()
        ok = s.live if aspect == "live" else s.ready
        return Response(200 if ok else 503, s.to_json(), "application/json")

    def liveness(self) -> Response:
        return self._answer("live")

    def readiness(self) -> Response:
        return self._answer("ready")


def health_server(aggregator: HealthAggregator, host: str, port: int) -> HttpServer:
    return HttpServer("health", host, port, {"/liveness": aggregator.liveness, "/readiness": aggregator.readiness})

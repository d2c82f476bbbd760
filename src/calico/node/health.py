"""calico-node's health probes, as Calico exposes them: -felix-live, -felix-ready, -bird-live, -bird-ready.

In: which checks to run, Felix's health address (FELIX_HEALTHHOST:FELIX_HEALTHPORT) and BIRD's control socket.
Out: a `ProbeResult` per check; the command exits 0 when every check passed, else 1 with one line per failure
on stderr, so each works as a liveness or readiness probe (a systemd ExecCondition, a monitoring check).

    felix-live   Felix answers 200 on /liveness
    felix-ready  Felix answers 200 on /readiness
    bird-live    BIRD answers on its control socket
    bird-ready   BIRD answers, is not recovering from a graceful restart, and every BGP session is
                 Established (a node with no BGP peers is ready)

The probe seams are small: `HttpStatus` (a URL to its HTTP status) and `BirdStatus` (the two BIRD questions),
real implementations by default, fakes in unit tests.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from calico.bgp.sessions import BGPSession
from calico.node.bird_probe import BirdError, BirdStatusSocket

__all__ = ["CHECKS", "ProbeResult", "bird_live", "bird_ready", "felix_probe", "http_status"]

CHECKS = ("felix-live", "felix-ready", "bird-live", "bird-ready")
TIMEOUT = 2.0

HttpStatus = Callable[[str], int]


class BirdStatus(Protocol):
    def sessions(self) -> list[BGPSession]: ...
    def graceful_restart_pending(self) -> bool: ...


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str = ""


def http_status(url: str) -> int:
    """The HTTP status of a GET; raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def felix_probe(aspect: str, host: str, port: int, get: HttpStatus = http_status) -> ProbeResult:
    """aspect "live" or "ready"."""
    path = "/liveness" if aspect == "live" else "/readiness"
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    try:
        status = get(url)
    except OSError as e:
        return ProbeResult(False, f"Felix is not {aspect}: no answer from {url}: {getattr(e, 'reason', e)}")
    if status != 200:
        return ProbeResult(False, f"Felix is not {aspect}: {url} answered {status}")
    return ProbeResult(True)


def bird_live(bird: BirdStatus) -> ProbeResult:
    try:
        bird.sessions()
    except BirdError as e:
        return ProbeResult(False, f"BIRD is not live: {e}")
    return ProbeResult(True)


def bird_ready(bird: BirdStatus) -> ProbeResult:
    try:
        recovering = bird.graceful_restart_pending()
        sessions = bird.sessions()
    except BirdError as e:
        return ProbeResult(False, f"BIRD is not ready: {e}")
    why = ["graceful restart recovery in progress"] if recovering else []
    down = [p for p in sessions if not p.established]
    if down:
        why.append("BGP not established with " + ", ".join(f"{p.name} ({p.info or p.state})" for p in down))
    return ProbeResult(False, "BIRD is not ready: " + "; ".join(why)) if why else ProbeResult(True)


def run_checks(
    checks: list[str], felix_host: str, felix_port: int, bird: BirdStatus | str, get: HttpStatus = http_status
) -> list[tuple[str, ProbeResult]]:
    """Each named check's result, in order; `bird` is a BirdStatus or the control socket's path."""
    control = BirdStatusSocket(bird, timeout=TIMEOUT) if isinstance(bird, str) else bird
    results = []
    for check in checks:
        if check == "felix-live":
            result = felix_probe("live", felix_host, felix_port, get)
        elif check == "felix-ready":
            result = felix_probe("ready", felix_host, felix_port, get)
        elif check == "bird-live":
            result = bird_live(control)
        elif check == "bird-ready":
            result = bird_ready(control)
        else:
            raise ValueError(f"unknown check {check!r}: one of {', '.join(CHECKS)}")
        results.append((check, result))
    return results

"""dnsmasq as the agent's supervised child, and the files it rereads: the one home of dnsmasq I/O.

In: a command line (`render.argv`) and the two file texts (`render.DnsmasqConfig`). Out: a running dnsmasq.
`start(argv)` (re)starts it: the old one is stopped first, the lease file (under the state directory) keeps
the leases across the restart; a dnsmasq that exits on its own is started again after a back-off (0.5 s
doubling to 30 s, back to 0.5 s after a minute of running). `reload()` sends SIGHUP, on which dnsmasq rereads
`--dhcp-hostsfile` and `--dhcp-optsfile` and keeps its leases. `write_files()` replaces each file atomically
(readable by dnsmasq after it dropped privileges).

A dnsmasq outlives an agent that is killed (a parent-death signal would not reach it: dnsmasq drops privileges,
which clears it) and goes on answering with the configuration it has, so VMs keep their leases while the agent
is away; the next agent stops it (named by the pid file, and only while it still runs our command line) before
starting its own.
`FakeDnsmasq` records the same calls in memory for unit tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from calico.dhcp.render import Paths

__all__ = ["DnsmasqControl", "DnsmasqProcess", "FakeDnsmasq", "process_running", "write_files"]

log = logging.getLogger(__name__)

_STARTED_WITHIN = 5.0  # seconds for a new dnsmasq to write its pid file (its signal handlers are set by then)
_HEALTHY_AFTER = 60.0  # a dnsmasq that ran this long restarts without back-off


class DnsmasqControl(Protocol):
    @property
    def pid(self) -> int | None: ...

    async def start(self, argv: Sequence[str]) -> None: ...

    def reload(self) -> bool:
        """SIGHUP: reread the hosts and options files; False when no dnsmasq runs."""
        ...

    async def stop(self) -> None: ...


def write_files(paths: Paths, hosts: str, opts: str) -> None:
    for path, text in ((paths.hosts, hosts), (paths.opts, opts)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)


class DnsmasqProcess:
    def __init__(self, paths: Paths, restart_delay: float = 0.5, max_restart_delay: float = 30.0,
                 stop_grace: float = 5.0) -> None:
        self.paths = paths
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.stop_grace = stop_grace
        self.starts = 0  # processes started (restarts after an exit included)
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self, argv: Sequence[str]) -> None:
        """Stop the running dnsmasq (if any), start one with `argv`; returns once it is up (or failed)."""
        await self.stop()
        started = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(list(argv), started))
        await asyncio.shield(started)

    def reload(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        os.kill(pid, signal.SIGHUP)
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self, argv: list[str], started: asyncio.Future[None]) -> None:
        delay = self.restart_delay
        try:
            while True:
                await asyncio.to_thread(self._stop_leftover)
                began = time.monotonic()
                rc = await self._run_once(argv, started)
                if not started.done():
                    started.set_result(None)
                ran = time.monotonic() - began
                delay = self.restart_delay if ran >= _HEALTHY_AFTER else delay
                log.warning("dnsmasq exited (%s) after %.1fs; starting it again in %.1fs", rc, ran, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_restart_delay)
        finally:
            if not started.done():
                started.set_result(None)
            await self._terminate()

    async def _run_once(self, argv: list[str], started: asyncio.Future[None]) -> str:
        try:
            self._proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL)
        except OSError as e:
            return f"could not start {argv[0]}: {e.strerror}"
        self.starts += 1
        log.info("dnsmasq started, pid %d", self._proc.pid)
        await self._wait_started(self._proc)
        if not started.done():
            started.set_result(None)
        rc = await self._proc.wait()
        return f"code {rc}" if rc >= 0 else f"signal {-rc}"

    async def _wait_started(self, proc: asyncio.subprocess.Process) -> None:
        """Until dnsmasq wrote its pid file, by then it handles SIGHUP (or it exited, or too long passed)."""
        deadline = time.monotonic() + _STARTED_WITHIN
        while proc.returncode is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                if int(self.paths.pid.read_text().strip() or 0) == proc.pid:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 0.02)

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), self.stop_grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        log.info("dnsmasq stopped, pid %d", proc.pid)

    def _stop_leftover(self) -> None:
        """A dnsmasq still running our command line from an earlier agent (its pid file says which)."""
        try:
            pid = int(self.paths.pid.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            return
        if "dnsmasq" not in cmdline or f"--pid-file={self.paths.pid}" not in cmdline.split("\0"):
            return
        log.warning("stopping dnsmasq pid %d left over from an earlier agent", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        while process_running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)


def process_running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; its parent, maybe an init that never reaps, has not looked)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


class FakeDnsmasq:
    """In memory: every start's argv in `starts`, `reloads` counted, `pid` changes on every start."""

    def __init__(self) -> None:
        self.starts: list[list[str]] = []
        self.reloads = 0
        self.stops = 0
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    async def start(self, argv: Sequence[str]) -> None:
        self.starts.append(list(argv))
        self._pid = 1000 + len(self.starts)

    def reload(self) -> bool:
        if self._pid is None:
            return False
        self.reloads += 1
        return True

    async def stop(self) -> None:
        self.stops += 1
        self._pid = None

"""The supervisor: keeps calico-node's children running and stops them cleanly (asyncio).

In: `ChildSpec`s. Out: running child processes, each in its own session and process group (so a signal to
the group reaches what it spawned) with a pid file when the spec names one; log lines for every start and
exit (with the exit code or signal).

A child that exits is restarted after the `Backoff` delay; an exit code in `restart_now_codes` restarts it at
once. A child with `start_when` waits (polled) until that holds. `request_stop()` (SIGTERM/SIGINT in
calico-node) makes every child loop send SIGTERM to its child's process group, wait up to `stop_grace`
seconds, then SIGKILL; `run()` returns once all are gone. Nothing else is touched: the routes and rules
the children programmed stay in the kernel. Children also get SIGTERM from the kernel if the supervisor
itself dies (PR_SET_PDEATHSIG), so a killed supervisor leaves no orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import IO

from calico.node.backoff import Backoff
from calico.node.children import ChildSpec

__all__ = ["Supervisor", "describe_exit"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before any fork: the child only calls it


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "did not start"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        backoff: Callable[[], Backoff] = Backoff,
        stop_grace: float = 10.0,
        poll_interval: float = 0.2,
    ) -> None:
        self.specs = list(specs)
        self.stop_grace = stop_grace
        self.poll_interval = poll_interval
        self._backoff = backoff
        self._stopping = asyncio.Event()
        self.pids: dict[str, int] = {}  # name -> pid of the running child
        self.starts: dict[str, int] = {s.name: 0 for s in self.specs}

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """Until `request_stop()`, then until every child is gone."""
        await asyncio.gather(*(self._keep_running(s) for s in self.specs))

    async def _pause(self, seconds: float) -> bool:
        """Sleep; True if a stop was requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self.stopping

    def _held(self, spec: ChildSpec) -> bool:
        return spec.hold_file is not None and spec.hold_file.exists()

    async def _keep_running(self, spec: ChildSpec) -> None:
        backoff = self._backoff()
        while not self.stopping:
            if self._held(spec):
                log.info("%s is held (%s exists); not starting it", spec.name, spec.hold_file)
                while self._held(spec):
                    if await self._pause(self.poll_interval):
                        return
            if spec.start_when is not None and not spec.start_when():
                log.info("%s waits for %s", spec.name, spec.waiting_for or "its start condition")
                while not spec.start_when():
                    if await self._pause(self.poll_interval):
                        return
            started = time.monotonic()
            returncode = await self._run_once(spec)
            if self.stopping:
                return
            ran = time.monotonic() - started
            if self._held(spec):  # stopped on purpose: start it as soon as the hold goes, no back-off
                log.info("%s %s while held", spec.name, describe_exit(returncode))
                continue
            delay = backoff.delay(ran, returncode in spec.restart_now_codes)
            log.warning("%s %s after %.1fs; restarting it in %.1fs", spec.name, describe_exit(returncode), ran, delay)
            if delay and await self._pause(delay):
                return

    async def _run_once(self, spec: ChildSpec) -> int | None:
        """Start the child and wait for its exit (or for a stop, then stop it); its return code."""
        try:
            out = _open_log(spec)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *spec.argv, env=dict(spec.env), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT if out is not None else None, start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            finally:
                if out is not None:
                    out.close()  # the child holds its own descriptor
        except OSError as e:
            log.error("cannot start %s (%s): %s", spec.name, spec.argv[0], e)
            return None
        self.pids[spec.name] = proc.pid
        self.starts[spec.name] += 1
        _write_pid(spec, proc.pid)
        log.info("started %s (pid %d): %s", spec.name, proc.pid, " ".join(spec.argv))
        exited = asyncio.ensure_future(proc.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not exited.done():
            await self._stop_child(spec, proc.pid, exited)
        self.pids.pop(spec.name, None)
        _remove_pid(spec)
        return proc.returncode

    async def _stop_child(self, spec: ChildSpec, pid: int, exited: asyncio.Future[int]) -> None:
        if spec.graceful_stop is not None:
            try:
                await asyncio.wait_for(spec.graceful_stop(), self.stop_grace)
                await asyncio.wait_for(asyncio.shield(exited), self.stop_grace)
            except Exception as e:  # any failure of the polite way leads to the signals below
                log.warning("%s (pid %d) did not stop gracefully (%s); sending SIGTERM", spec.name, pid, e)
            if exited.done():
                log.info("stopped %s (pid %d) gracefully: it %s", spec.name, pid, describe_exit(exited.result()))
                return
        _signal_group(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.stop_grace)
        except TimeoutError:
            if not exited.done():
                log.warning("%s (pid %d) still runs %.0fs after SIGTERM; sending SIGKILL", spec.name, pid,
                            self.stop_grace)
                _signal_group(pid, signal.SIGKILL)
            await exited
        log.info("stopped %s (pid %d): it %s", spec.name, pid, describe_exit(exited.result()))


def _signal_group(pgid: int, sig: int) -> None:
    # Only called while the child is not yet reaped: its pid (= its group's id) is still ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _open_log(spec: ChildSpec) -> IO[bytes] | None:
    if spec.log_file is None:
        return None
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    return open(spec.log_file, "ab")  # handed to the child; closed here right after the spawn


def _write_pid(spec: ChildSpec, pid: int) -> None:
    if spec.pid_file is None:
        return
    try:
        spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = spec.pid_file.with_name(spec.pid_file.name + ".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(spec.pid_file)
    except OSError as e:
        log.warning("cannot write %s: %s", spec.pid_file, e)


def _remove_pid(spec: ChildSpec) -> None:
    if spec.pid_file is not None:
        with contextlib.suppress(OSError):
            spec.pid_file.unlink()

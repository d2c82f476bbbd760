"""The one way the dataplane runs a kernel tool (nft, iptables-restore, ipset, sysctl, conntrack).

Enters: an argv, optional stdin text, and the network namespace to run it in (None: the agent's own).
Leaves: the tool's stdout, or `ToolError` naming the command and its stderr. Never blocks the event loop;
a command that outlives its timeout is killed (only the process we started). Every call is reported to the
observers registered with `observe()` (Felix's metrics: calls, errors and exec time per tool).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence

# (tool basename, seconds, succeeded) for every kernel tool call, spawned or in-process (libnftables: "nft").
ToolObserver = Callable[[str, float, bool], None]
_observers: list[ToolObserver] = []


def observe(fn: ToolObserver) -> Callable[[], None]:
    """Register `fn` for every tool call; returns the function that unregisters it."""
    _observers.append(fn)
    return lambda: _observers.remove(fn) if fn in _observers else None


def report(tool: str, seconds: float, ok: bool) -> None:
    for fn in list(_observers):
        fn(os.path.basename(tool), seconds, ok)


class ToolError(RuntimeError):
    """A kernel tool failed; the message names the command, its exit code and its stderr."""

    def __init__(self, message: str, returncode: int = 0, stderr: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


async def run_tool(
    netns: str | None, argv: Sequence[str], stdin: str | None = None, timeout: float = 60.0,
    check: bool = True,
) -> tuple[int, str, str]:
    """(returncode, stdout, stderr); raises ToolError on a non-zero exit when `check`."""
    started = time.perf_counter()
    try:
        rc, out, stderr = await _spawn(netns, argv, stdin, timeout)
    except BaseException:
        report(argv[0], time.perf_counter() - started, False)
        raise
    report(argv[0], time.perf_counter() - started, rc == 0)
    if check and rc != 0:
        raise ToolError(f"{' '.join(argv)} failed ({rc}): {stderr[:2000]}", rc, stderr)
    return rc, out, stderr


async def _spawn(
    netns: str | None, argv: Sequence[str], stdin: str | None, timeout: float
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *in_netns(netns, argv),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode(errors="replace")

"""BIRD: the one home of talking to the daemon (its control socket) and of `bird -p` (its config check).

In: a control socket path and commands (`show protocols all`, `show status`, `configure`, `graceful restart`);
a config file to check. Out: `BirdReply` (BIRD's numbered reply lines), or `BirdUnavailable` (nothing answers:
BIRD is not running), `BirdCommandFailed` (BIRD answered with an error code, 8000-9999) or `BirdError`.

The control protocol is the one `birdc` speaks: BIRD greets with `0001 BIRD <version> ready.`; every reply line
starts with a four-digit code and `-` (more follows) or ` ` (last line); a line starting with a space continues
the previous code. Speaking it directly costs no process spawn per command.

`BirdControl` is the seam: `BirdSocket` is the real one, tests of callers may pass a fake with `command()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = [
    "CONTROL_SOCKET",
    "DEFAULT_RUN_DIR",
    "BirdCommandFailed",
    "BirdControl",
    "BirdError",
    "BirdReply",
    "BirdSocket",
    "BirdUnavailable",
    "bird_command",
    "check_config",
    "configure",
    "graceful_restart",
]

BIRD_BINARY = "bird"
DEFAULT_RUN_DIR = "/var/run/calico"  # calico-node's run directory ($CALICO_RUN_DIR): BIRD's control socket
CONTROL_SOCKET = "bird.ctl"
FIRST_ERROR_CODE = 8000  # 8xxx run-time errors, 9xxx parse errors


class BirdError(Exception):
    """Talking to BIRD failed; the message names the socket or file."""


class BirdUnavailable(BirdError):
    """Nothing answers on the control socket: BIRD is not running (yet)."""


class BirdCommandFailed(BirdError):
    def __init__(self, command: str, code: int, text: str) -> None:
        super().__init__(f"BIRD refused {command!r}: {code} {text}")
        self.code = code
        self.text = text


@dataclass(frozen=True)
class BirdReply:
    lines: tuple[tuple[int, str], ...]  # (code, text) per line, continuation lines with their code

    def text(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def with_code(self, code: int) -> list[str]:
        return [text for c, text in self.lines if c == code]


class BirdControl(Protocol):
    async def command(self, command: str) -> BirdReply: ...


class BirdSocket:
    """One connection per command (BIRD serves many; nothing is held open between renders)."""

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    async def command(self, command: str) -> BirdReply:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), self.timeout)
        except (OSError, TimeoutError) as e:
            raise BirdUnavailable(f"BIRD control socket {self.path}: {getattr(e, 'strerror', None) or e}") from None
        try:
            async with asyncio.timeout(self.timeout):
                await _read_reply(reader, self.path)  # the greeting
                writer.write(command.encode() + b"\n")
                await writer.drain()
                reply = await _read_reply(reader, self.path)
        except TimeoutError:
            raise BirdError(f"BIRD control socket {self.path}: no answer to {command!r} in {self.timeout}s") from None
        except OSError as e:
            raise BirdError(f"BIRD control socket {self.path}: {e}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        failed = next(((c, t) for c, t in reply.lines if c >= FIRST_ERROR_CODE), None)
        if failed is not None:
            raise BirdCommandFailed(command, *failed)
        return reply


async def _read_reply(reader: asyncio.StreamReader, path: str) -> BirdReply:
    lines: list[tuple[int, str]] = []
    code = 0
    while True:
        raw = await reader.readline()
        if not raw:
            raise BirdError(f"BIRD control socket {path}: connection closed in the middle of a reply")
        line = raw.decode(errors="replace").rstrip("\n")
        if len(line) >= 5 and line[:4].isdigit() and line[4] in "- ":
            code = int(line[:4])
            lines.append((code, line[5:]))
            if line[4] == " ":
                return BirdReply(tuple(lines))
        else:
            lines.append((code, line.removeprefix(" ")))


def bird_command(config: str | Path, control_socket: str | Path, bird: str = BIRD_BINARY) -> list[str]:
    """How to run BIRD for Calico (in the foreground, for a supervisor).

    `-R` starts it in graceful restart recovery: the kernel protocol leaves the routes a previous BIRD installed
    (kept by `persist`) until the peers have resent theirs, so a restart does not flap the host's routes."""
    return [bird, "-R", "-f", "-c", str(config), "-s", str(control_socket)]


async def configure(control: BirdControl) -> str:
    """Make BIRD re-read the file it was started with; returns BIRD's answer (e.g. "Reconfigured")."""
    return (await control.command("configure")).text()


async def graceful_restart(control: BirdControl) -> str:
    """Stop BIRD so that its peers keep its routes until it is back (a plain stop makes them withdraw)."""
    return (await control.command("graceful restart")).text()


async def check_config(path: str | Path, bird: str = BIRD_BINARY, timeout: float = 30.0) -> str | None:
    """None when `bird -p -c path` accepts the file, else BIRD's complaint (file, line, column, what)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            bird, "-p", "-c", str(path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as e:
        raise BirdError(f"cannot run {bird} -p: {e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise BirdError(f"{bird} -p -c {path}: no answer in {timeout}s") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave our child behind
            proc.kill()
            await proc.wait()
    if proc.returncode == 0:
        return None
    return (err or out).decode(errors="replace").strip() or f"{bird} -p exited with {proc.returncode}"

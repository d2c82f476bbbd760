"""Where flow records go: a JSON-lines file with rotation, and a local unix socket that streams them.

In: each flush's records as JSON lines. Out:
  - `JsonLinesFile`: `<directory>/flows.log`, one record per line, rotated when it would pass `max_bytes`
    (`flows.log` -> `flows.log.1` -> ... -> `flows.log.<max_files - 1>`, the oldest deleted), as Calico's
    FlowLogsFileMaxFileSizeMB / FlowLogsFileMaxFiles do. Writes are blocking: the collector runs them in a
    worker thread. `read_lines(directory)` gives every kept line, oldest first (what `calicoctl flows` reads).
  - `SocketServer`: a unix stream socket; every connected client gets each new line. A client that does not
    keep up (more than `max_buffer` bytes unsent) misses lines, which are counted (`dropped`), never queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "flows.log"


class JsonLinesFile:
    def __init__(self, directory: str, max_bytes: int = 100 << 20, max_files: int = 5) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.max_bytes = max_bytes
        self.max_files = max(1, max_files)

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        data = "".join(line + "\n" for line in lines).encode()
        size = self.path.stat().st_size if self.path.exists() else 0
        if size and size + len(data) > self.max_bytes:
            self._rotate()
        with open(self.path, "ab") as f:
            f.write(data)

    def _rotate(self) -> None:
        oldest = self.directory / f"{FILE_NAME}.{self.max_files - 1}"
        if self.max_files == 1:
            self.path.unlink(missing_ok=True)
            return
        oldest.unlink(missing_ok=True)
        for n in range(self.max_files - 2, 0, -1):
            src = self.directory / f"{FILE_NAME}.{n}"
            if src.exists():
                src.rename(self.directory / f"{FILE_NAME}.{n + 1}")
        self.path.rename(self.directory / f"{FILE_NAME}.1")


def read_lines(directory: str) -> Iterator[str]:
    """Every line the kept files hold, oldest file first."""
    d = Path(directory)
    rotated = sorted((p for p in d.glob(f"{FILE_NAME}.*") if p.suffix[1:].isdigit()),
                     key=lambda p: int(p.suffix[1:]), reverse=True)
    for path in [*rotated, d / FILE_NAME]:
        with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.strip():
                    yield line.rstrip("\n")


class SocketServer:
    def __init__(self, path: str, max_buffer: int = 1 << 20) -> None:
        self.path = path
        self.max_buffer = max_buffer
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.dropped = 0  # lines a slow client missed

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)  # a previous run's socket; never some other file
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o660)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            await reader.read()  # clients only listen; this returns when they go
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    def publish(self, lines: list[str]) -> None:
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode()
        for writer in list(self._clients):
            if writer.is_closing():
                self._clients.discard(writer)
            elif writer.transport.get_write_buffer_size() + len(data) > self.max_buffer:
                self.dropped += len(lines)
            else:
                writer.write(data)

    async def close(self) -> None:
        for writer in list(self._clients):
            writer.close()
        self._clients.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

"""A loopback TCP proxy whose link can be cut, to simulate network faults between a client and a server.

`cut()` closes every open connection and refuses new ones; `blackhole()` keeps connections open but stops
forwarding bytes (a silent partition, the case where a client must not hang); `restore()` heals the link.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode = "up"  # up | cut | blackhole
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._healed = asyncio.Event()
        self._healed.set()
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.cut()
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.mode = "cut"
        self._healed.clear()
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    def blackhole(self) -> None:
        self.mode = "blackhole"
        self._healed.clear()

    def restore(self) -> None:
        self.mode = "up"
        self._healed.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "cut":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)
        for w in (writer, up_writer):
            self._conns.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    await self._healed.wait()  # hold the bytes until the link heals (or is cut)
                if self.mode == "cut" or writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()

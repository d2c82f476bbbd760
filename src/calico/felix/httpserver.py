"""A tiny HTTP/1.0 server on asyncio streams, shared by the health and Prometheus endpoints.

Enters: a host, a port and a route table (path -> handler returning a `Response`). Leaves: answers to GET
and HEAD requests, one request per connection (`Connection: close`); 404 for unknown paths, 405 for
other methods, 400 for anything that is not a request line. Nothing else: no keep-alive, no bodies in,
no TLS. Slow or oversized requests are cut off so a stuck client cannot hold the event loop's attention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

log = logging.getLogger(__name__)

__all__ = ["HttpServer", "Response"]

MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Response | Awaitable[Response]]


def _text(status: HTTPStatus) -> Response:
    return Response(status.value, f"{status.value} {status.phrase}\n".encode())


class HttpServer:
    """`await start()` binds (raises OSError); `run()` binds with retries and serves until cancelled."""

    def __init__(self, name: str, host: str, port: int, routes: Mapping[str, Handler]) -> None:
        self.name = name
        self.host = host
        self.requested_port = port
        self.routes = dict(routes)
        self._server: asyncio.Server | None = None
        self.serving = asyncio.Event()  # set once bound

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        assert self._server is not None and self._server.sockets, "server not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        # An empty host means every address, as Calico's PrometheusMetricsHost "" does.
        self._server = await asyncio.start_server(
            self._handle, host=self.host or None, port=self.requested_port, reuse_address=True,
            limit=MAX_REQUEST_BYTES,
        )
        self.serving.set()
        log.info("%s server listening on %s:%d", self.name, self.host or "*", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            self.serving.clear()

    async def run(self, retry_delay: float = 5.0) -> None:
        """Serve until cancelled; a failed bind (port in use, address missing) is logged and retried, since
        an agent that enforces policy must not die because its health port is taken."""
        try:
            while self._server is None:
                try:
                    await self.start()
                except OSError as e:
                    log.error("%s server cannot listen on %s:%d (%s); retrying in %.0fs",
                              self.name, self.host or "*", self.requested_port, e, retry_delay)
                    await asyncio.sleep(retry_delay)
            await asyncio.Future()  # until cancelled
        finally:
            await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path = await asyncio.wait_for(self._read_request(reader), REQUEST_TIMEOUT)
            response = await self._dispatch(method, path)
            head = (
                f"HTTP/1.0 {response.status} {HTTPStatus(response.status).phrase}\r\n"
                f"Content-Type: {response.content_type}\r\n"
                f"Content-Length: {len(response.body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            writer.write(head if method == "HEAD" else head + response.body)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or dawdled; nothing to answer
        except Exception:
            log.exception("%s server: error answering a request", self.name)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        head = await reader.readuntil(b"\r\n\r\n")  # LimitOverrunError past MAX_REQUEST_BYTES
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "", ""
        return parts[0], parts[1].split("?", 1)[0]

    async def _dispatch(self, method: str, path: str) -> Response:
        if not method:
            return _text(HTTPStatus.BAD_REQUEST)
        handler = self.routes.get(path)
        if handler is None:
            return _text(HTTPStatus.NOT_FOUND)
        if method not in ("GET", "HEAD"):
            return _text(HTTPStatus.METHOD_NOT_ALLOWED)
        result = handler()
        if not isinstance(result, Response):
            result = await result
        return result

"""The shared HTTP server and the health endpoints, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from calico.felix.health import HealthAggregator, health_server
from calico.felix.httpserver import HttpServer, Response
from tests.unit.felix.http_client import fetch


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    async def slow() -> Response:
        return Response(200, b"async ok")

    srv = HttpServer("test", "127.0.0.1", 0, {"/hello": lambda: Response(200, b"hi"), "/async": slow})
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


async def test_routes_methods_and_errors(server: HttpServer) -> None:
    status, headers, body = await fetch(server.port, "/hello")
    assert (status, body) == (200, b"hi")
    assert headers["content-length"] == "2" and headers["connection"] == "close"
    assert (await fetch(server.port, "/async?x=1"))[::2] == (200, b"async ok")
    assert (await fetch(server.port, "/nope"))[0] == 404
    assert (await fetch(server.port, "/hello", "POST"))[0] == 405
    status, headers, body = await fetch(server.port, "/hello", "HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", "2")
    assert (await fetch(server.port, "", raw=b"garbage\r\n\r\n"))[0] == 400


async def test_oversized_or_silent_clients_do_not_break_the_server(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /" + b"a" * 20000)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # cut off, no answer
    writer.close()
    assert (await fetch(server.port, "/hello"))[0] == 200


async def test_run_retries_a_taken_port() -> None:
    first = HttpServer("a", "127.0.0.1", 0, {})
    await first.start()
    second = HttpServer("b", "127.0.0.1", first.port, {"/x": lambda: Response(200, b"b")})
    task = asyncio.create_task(second.run(retry_delay=0.05))
    await asyncio.sleep(0.15)
    assert not second.serving.is_set()
    await first.close()
    await asyncio.wait_for(second.serving.wait(), 5)
    assert (await fetch(second.port, "/x"))[2] == b"b"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_aggregation_rules() -> None:
    clock = FakeClock()
    agg = HealthAggregator(clock)
    assert agg.summary().live and agg.summary().ready  # nobody registered
    loop = agg.register("loop", timeout=10)
    ready_only = agg.register("sync", live=False, ready=True, timeout=0)
    s = agg.summary()
    assert not s.live and not s.ready  # never reported
    loop.report(live=True, ready=True)
    s = agg.summary()
    assert s.live and not s.ready  # the ready-only reporter has not said ready; liveness ignores it
    ready_only.report(live=False, ready=True)
    assert agg.summary().ready
    clock.now += 11
    s = agg.summary()
    assert not s.live and not s.ready  # "loop" went stale
    assert {r["name"]: r["stale"] for r in s.reporters} == {"loop": True, "sync": False}
    loop.report(live=True, ready=False)
    s = agg.summary()
    assert s.live and not s.ready


async def test_health_endpoints_over_http() -> None:
    agg = HealthAggregator()
    rep = agg.register("felix", timeout=30)
    srv = health_server(agg, "127.0.0.1", 0)
    await srv.start()
    try:
        assert (await fetch(srv.port, "/liveness"))[0] == 503
        rep.report(live=True, ready=False)
        assert (await fetch(srv.port, "/liveness"))[0] == 200
        status, headers, body = await fetch(srv.port, "/readiness")
        assert status == 503 and headers["content-type"] == "application/json"
        assert json.loads(body)["reporters"][0]["name"] == "felix"
        rep.report(live=True, ready=True)
        assert (await fetch(srv.port, "/readiness"))[0] == 200
    finally:
        await srv.close()

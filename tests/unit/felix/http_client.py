"""A minimal HTTP/1.0 client for the felix server tests (no third-party HTTP client is installed)."""

from __future__ import annotations

import asyncio


async def fetch(port: int, path: str, method: str = "GET", raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw if raw is not None else f"{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body

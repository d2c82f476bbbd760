"""A TCP gateway from the root namespace's loopback into a lab namespace (so calicoctl can reach the lab's etcd).

`python -m calico.lab.gateway NETNS TARGET_HOST LISTEN_PORT:TARGET_PORT [...]`: accepts on
127.0.0.1:LISTEN_PORT (one listener per pair, e.g. one per etcd member); for each connection it opens a socket
*inside* NETNS (a socket keeps the namespace it was created in, so the process switches namespace only around
`socket()`), connects it to the target and pipes bytes both ways. It changes nothing in any namespace: it only
binds loopback ports and opens sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in(netns: str, family: int) -> socket.socket:
    """A TCP socket that lives in `netns` (the calling thread returns to its own namespace at once)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            _setns(home)
    finally:
        os.close(home)
        os.close(target)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def serve(pairs: list[tuple[int, int]], netns: str, host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    async def handle(target_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = socket_in(netns, family)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, target_port))
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
        except OSError:
            sock.close()
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    servers = [
        await asyncio.start_server(functools.partial(handle, target), "127.0.0.1", listen) for listen, target in pairs
    ]
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    ns, target_host = sys.argv[1], sys.argv[2]
    pairs = [(int(a), int(b)) for a, _, b in (p.partition(":") for p in sys.argv[3:])]
    asyncio.run(serve(pairs, ns, target_host))

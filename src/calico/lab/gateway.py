"""A TCP gateway from the root namespace's loopback into a lab namespace (so calicoctl can reach the lab's etcd).

`python -m calico.lab.gateway LISTEN_PORT NETNS TARGET_HOST TARGET_PORT`: accepts on
127.0.0.1:LISTEN_PORT; for each connection it opens a socket *inside* NETNS (a socket keeps the namespace it was
created in, so the process switches namespace only around `socket()`), connects it to the target and pipes
bytes both ways. It changes nothing in any namespace: it only binds a loopback port and opens sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
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


async def serve(port: int, netns: str, host: str, target_port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
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

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen_port, ns, target_host, target = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    asyncio.run(serve(int(listen_port), ns, target_host, int(target)))

"""TCP reachability between many namespaces, from one process.

Enters: (source namespace, destination namespace, destination address) pairs and a port. Leaves: when each
pair first connected (None: not before the deadline). A socket stays in the network namespace it was made in,
whatever namespace its process runs in later; so each namespace gets one worker thread that setns(2)s into it
and makes sockets there, and one event loop drives every connect at once (instead of a listener and a sender
process per pair). The kernel's backlog answers the SYNs: nothing is accepted, nothing is sent. The process's
own thread never leaves its namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from dataclasses import dataclass

from calico.workloads.ip import NETNS_DIR

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Pair:
    src_ns: str
    dst_ns: str
    dst_ip: str


def _enter(ns: str) -> None:
    """Move the calling thread (a worker of that namespace's executor) into `ns`."""
    fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


class Namespaces:
    """One worker thread inside each namespace asked for, making sockets there."""

    def __init__(self) -> None:
        self._workers: dict[str, ThreadPoolExecutor] = {}

    async def socket(self, ns: str, family: socket.AddressFamily) -> socket.socket:
        worker = self._workers.get(ns)
        if worker is None:
            worker = self._workers[ns] = ThreadPoolExecutor(1, f"ns-{ns}", initializer=_enter, initargs=(ns,))
        try:
            sock = await asyncio.get_running_loop().run_in_executor(worker, socket.socket, family,
                                                                     socket.SOCK_STREAM)
        except BrokenThreadPool:  # its initializer could not enter the namespace
            raise OSError(f"cannot enter network namespace {ns!r} ({NETNS_DIR / ns})") from None
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        for worker in self._workers.values():
            worker.shutdown(wait=True)
        self._workers.clear()


@contextlib.contextmanager
def _closing(socks: list[socket.socket]) -> Iterator[None]:
    try:
        yield
    finally:
        for s in socks:
            s.close()


async def _connects(nss: Namespaces, pair: Pair, port: int, deadline: float, attempt: float, gap: float,
                    slots: asyncio.Semaphore) -> float | None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        async with slots:
            sock = await nss.socket(pair.src_ns, _family(pair.dst_ip))
            try:
                left = deadline - loop.time()
                await asyncio.wait_for(loop.sock_connect(sock, (pair.dst_ip, port)), max(0.01, min(attempt, left)))
                return loop.time() - start
            except (OSError, TimeoutError):
                pass
            finally:
                sock.close()
        if loop.time() + gap >= deadline:
            return None
        await asyncio.sleep(gap)


async def reach(pairs: Iterable[Pair], port: int = 8080, timeout: float = 1.0, attempt: float = 0.3,
                gap: float = 0.05, parallel: int = 256) -> dict[Pair, float | None]:
    """Every pair tries until it connects or `timeout` seconds have passed (attempts of at most `attempt` s,
    `gap` s apart; at most `parallel` in flight). Listeners are made first, one per destination address.
    Per pair: seconds from the start until it connected, or None."""
    todo = list(dict.fromkeys(pairs))
    nss = Namespaces()
    listeners: list[socket.socket] = []
    try:
        with _closing(listeners):
            for ns, ip in dict.fromkeys((p.dst_ns, p.dst_ip) for p in todo):
                s = await nss.socket(ns, _family(ip))
                listeners.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, port))
                s.listen(4096)
            deadline = asyncio.get_running_loop().time() + timeout
            slots = asyncio.Semaphore(parallel)
            oks = await asyncio.gather(*(_connects(nss, p, port, deadline, attempt, gap, slots) for p in todo))
    finally:
        nss.close()
    return dict(zip(todo, oks, strict=True))

"""The host's interface addresses, as a live map: what host endpoints without an interface name resolve by.

In: the kernel's links and addresses in one network namespace (a dump at start, then RTM_NEWADDR /
RTM_DELADDR / RTM_NEWLINK / RTM_DELLINK news). Out: `addresses()`, interface name -> its addresses, and a
call of `on_change(addresses)` whenever that map changes (once per burst of netlink news). Workload
interfaces (the Calico prefixes) and loopback are left out: host endpoint policy never applies to them.

Read-only: nothing is ever written to the kernel here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_NEWLINK,
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
)

log = logging.getLogger(__name__)

Addresses = dict[str, frozenset[str]]
RESYNC_DELAY = 1.0


class HostAddressMonitor:
    def __init__(
        self,
        netns: str | None,
        workload_prefixes: Iterable[str] = ("cali",),
        on_change: Callable[[Addresses], Awaitable[None]] | None = None,
    ) -> None:
        self.netns = netns
        self.prefixes = tuple(workload_prefixes)
        self.on_change = on_change
        self._names: dict[int, str] = {}
        self._addrs: dict[int, set[str]] = {}
        self._last: Addresses = {}
        self._sock: AsyncIPRoute | None = None
        self._task: asyncio.Task[None] | None = None

    def addresses(self) -> Addresses:
        return dict(self._last)

    async def start(self) -> None:
        # flags=0: never create the namespace if it is missing. Subscribe before the dump: no news falls between.
        self._sock = AsyncIPRoute(netns=self.netns, groups=0, flags=0)
        await self._sock.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        await self._dump()
        self._last = self._snapshot()
        self._task = asyncio.create_task(self._monitor())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # --- kernel news ------------------------------------------------------------------------------------

    async def _dump(self) -> None:
        """Re-read every link and address, on a socket of its own (the subscribed one carries only news)."""
        ipr = AsyncIPRoute(netns=self.netns, groups=0, flags=0)
        try:
            self._names.clear()
            self._addrs.clear()
            async for msg in await ipr.link("dump"):
                self._on_msg(msg)
            for family in (socket.AF_INET, socket.AF_INET6):
                async for msg in await ipr.addr("dump", family=family):
                    self._on_msg(msg)
        finally:
            ipr.close()

    def _on_msg(self, msg: Any) -> None:
        kind = msg["header"]["type"]
        index = msg["index"]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            if kind == RTM_DELLINK:
                self._names.pop(index, None)
                self._addrs.pop(index, None)
            elif name := msg.get("IFLA_IFNAME"):
                self._names[index] = name
            return
        addr = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
        if not addr:
            return
        try:
            addr = str(ipaddress.ip_address(addr))
        except ValueError:
            return
        if kind == RTM_DELADDR:
            self._addrs.get(index, set()).discard(addr)
        else:
            self._addrs.setdefault(index, set()).add(addr)

    def _snapshot(self) -> Addresses:
        out: Addresses = {}
        for index, addrs in self._addrs.items():
            name = self._names.get(index)
            if not name or name == "lo" or name.startswith(self.prefixes) or not addrs:
                continue
            out[name] = frozenset(addrs)
        return out

    async def _monitor(self) -> None:
        assert self._sock is not None
        while True:
            try:
                async for msg in self._sock.get():
                    self._on_msg(msg)
            except asyncio.CancelledError:
                raise
            except Exception:  # a lost event (socket overrun) or worse: re-read everything rather than guess
                log.exception("address monitor in %s failed; re-reading", self.netns or "own netns")
                await asyncio.sleep(RESYNC_DELAY)
                with contextlib.suppress(Exception):
                    await self._dump()
            snap = self._snapshot()
            if snap != self._last:
                self._last = snap
                if self.on_change is not None:
                    try:
                        await self.on_change(dict(snap))
                    except Exception:
                        log.exception("host address change handler failed")

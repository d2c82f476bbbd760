"""The host's interfaces and routing, as autodetection sees them: the one home of that kernel reading.

In: the network namespace this process runs in (calico-node runs in the host's). Out: `HostNetwork`, a
small read-only interface with two answers: every interface with its addresses (pyroute2 netlink dumps), and
the source address the kernel would use towards a destination (a connected UDP socket: routing is
consulted, no packet is sent). `StaticHostNetwork` is the in-memory stand-in for unit tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Protocol

from calico.node.autodetect import HostInterface, IPAddress, IPInterface

__all__ = ["HostNetwork", "NetlinkHostNetwork", "StaticHostNetwork"]

# The port only fills the socket address; a connected UDP socket sends nothing.
_REACH_PORT = 80


class HostNetwork(Protocol):
    async def interfaces(self) -> list[HostInterface]: ...

    async def route_source(self, destination: str, version: int) -> IPAddress:
        """The local address the kernel picks to reach `destination` (an address or a host name);
        raises OSError when there is no route (or the name does not resolve)."""
        ...


class NetlinkHostNetwork:
    async def interfaces(self) -> list[HostInterface]:
        from pyroute2 import AsyncIPRoute  # late: ~0.17 s, and the health probes never need it

        names: dict[int, str] = {}
        addrs: dict[int, list[IPInterface]] = {}
        ipr = AsyncIPRoute(groups=0, flags=0)
        try:
            async for msg in await ipr.link("dump"):
                names[msg["index"]] = msg.get("IFLA_IFNAME") or f"if{msg['index']}"
            for family in (socket.AF_INET, socket.AF_INET6):
                async for msg in await ipr.addr("dump", family=family):
                    # IFA_LOCAL is the local end of a point-to-point address; IFA_ADDRESS otherwise.
                    text = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
                    if not text:
                        continue
                    try:
                        addr = ipaddress.ip_interface(f"{text}/{msg['prefixlen']}")
                    except ValueError:
                        continue
                    addrs.setdefault(msg["index"], []).append(addr)
        finally:
            ipr.close()
        return [HostInterface(name, index, tuple(addrs.get(index, ()))) for index, name in names.items()]

    async def route_source(self, destination: str, version: int) -> IPAddress:
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(destination, _REACH_PORT, family=family, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"{destination} has no IPv{version} address")
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(infos[0][4])
            return ipaddress.ip_address(s.getsockname()[0])


class StaticHostNetwork:
    """Fixed interfaces and routes: `routes` maps a destination to the source address towards it."""

    def __init__(self, interfaces: Sequence[HostInterface], routes: Mapping[str, str] | None = None) -> None:
        self._interfaces = list(interfaces)
        self.routes = dict(routes or {})

    async def interfaces(self) -> list[HostInterface]:
        return list(self._interfaces)

    async def route_source(self, destination: str, version: int) -> IPAddress:
        src = self.routes.get(destination)
        if src is None or ipaddress.ip_address(src).version != version:
            raise OSError(f"no route to {destination}")
        return ipaddress.ip_address(src)

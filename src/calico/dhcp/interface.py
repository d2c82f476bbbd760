"""The agent's own interface, which holds every served subnet's gateway address: the one home of its netlink I/O.

In: the addresses it must hold ("gateway/prefixlen"). Out: a bridge with no ports (this kernel has no `dummy`
device; a bridge without ports stays up and needs no peer, unlike a veth end) named `Settings.interface`,
up, holding exactly those addresses, each added with `noprefixroute` (so the host's routes towards VMs on
other hosts are untouched: only the address's local route exists) and, for IPv6, `nodad`. The kernel's own
link-local address is left alone. `remove()` deletes the bridge.

`NetlinkGatewayInterface` does it with pyroute2 in a network namespace (None: the process's own);
`FakeGatewayInterface` keeps the same state in memory for unit tests.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Sequence
from typing import Protocol

__all__ = ["FakeGatewayInterface", "GatewayInterface", "InterfaceError", "NetlinkGatewayInterface"]

IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200


class InterfaceError(RuntimeError):
    """The interface cannot be made as wanted; the message says which and why."""


class GatewayInterface(Protocol):
    async def ensure(self, addresses: Sequence[str]) -> None:
        """Create the interface if missing, bring it up, make its addresses exactly `addresses`."""
        ...

    async def remove(self) -> None: ...


def _ours(addresses: Sequence[str]) -> set[str]:
    """Canonical "address/len" text, link-local addresses (the kernel's) left out."""
    out = set()
    for a in addresses:
        iface = ipaddress.ip_interface(a)
        if not iface.ip.is_link_local:
            out.add(str(iface))
    return out


class NetlinkGatewayInterface:
    def __init__(self, name: str, netns: str | None = None) -> None:
        self.name = name
        self.netns = netns

    def _socket(self):  # type: ignore[no-untyped-def]
        from pyroute2 import AsyncIPRoute  # late: ~0.17 s to import

        # flags=0: never create the namespace if it is missing (pyroute2's default would).
        return AsyncIPRoute(netns=self.netns, groups=0, flags=0) if self.netns else AsyncIPRoute(groups=0)

    async def ensure(self, addresses: Sequence[str]) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        want = _ours(addresses)
        ipr = self._socket()
        try:
            index = await self._index(ipr)
            if index is None:
                await ipr.link("add", ifname=self.name, kind="bridge")
                index = await self._index(ipr)
                if index is None:
                    raise InterfaceError(f"interface {self.name}: created, then not found")
            await ipr.link("set", index=index, state="up")
            have = set()
            async for msg in await ipr.addr("dump", index=index):
                have.add(f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
            have = _ours(sorted(have))
            for addr in sorted(have - want):
                ip, _, plen = addr.partition("/")
                await ipr.addr("del", index=index, address=ip, prefixlen=int(plen))
            for addr in sorted(want - have):
                ip, _, plen = addr.partition("/")
                flags = IFA_F_NOPREFIXROUTE | (IFA_F_NODAD if ":" in ip else 0)
                await ipr.addr("add", index=index, address=ip, prefixlen=int(plen), IFA_FLAGS=flags)
        except NetlinkError as e:
            raise InterfaceError(f"interface {self.name}: {e}") from e
        finally:
            ipr.close()

    async def remove(self) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._socket()
        try:
            index = await self._index(ipr)
            if index is not None:
                await ipr.link("del", index=index)
        except NetlinkError as e:
            raise InterfaceError(f"interface {self.name}: {e}") from e
        finally:
            ipr.close()

    async def _index(self, ipr) -> int | None:  # type: ignore[no-untyped-def]
        """The interface's index, or None when it does not exist; refuses a device that is not a bridge."""
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            [msg] = await ipr.link("get", ifname=self.name)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info is not None else None
        if kind != "bridge":
            raise InterfaceError(f"interface {self.name} exists and is a {kind or 'plain'} device, not the agent's "
                                 "bridge: remove it or choose another --interface")
        return int(msg["index"])


class FakeGatewayInterface:
    """In memory: `exists`, `addresses` (canonical text), and every call in `calls`."""

    def __init__(self, fail: bool = False) -> None:
        self.exists = False
        self.addresses: set[str] = set()
        self.calls: list[str] = []
        self.fail = fail

    async def ensure(self, addresses: Sequence[str]) -> None:
        self.calls.append("ensure")
        if self.fail:
            raise InterfaceError("fake interface: failing as told")
        self.exists = True
        self.addresses = _ours(addresses)

    async def remove(self) -> None:
        self.calls.append("remove")
        self.exists = False
        self.addresses = set()


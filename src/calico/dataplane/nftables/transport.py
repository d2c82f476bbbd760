"""How the nftables backend reaches one namespace's nftables: a transport, as kube-proxy's knftables has.

In: a transaction (a list of `ops.Op`) or a request to list Calico's table or its counters. Out: the
transaction applied atomically (or `NftError` with nft's message, and nothing applied), or the table (its
counters) as `nft -j list table` (`list counters table`) gives it (None when the table does not exist).
Three implementations share the `NftTransport` interface:

  - `LibNftTransport`: libnftables in-process (`libnft.LibNft`: one context, no spawn per call); what Felix uses.
  - `SpawnTransport`: `nft -f -` / `nft -j list table ...` spawned per call (where libnftables is missing).
  - `fake.FakeNft`: an in-memory table that applies the same operations, for tests without root.

Every real call is reported to `calico.dataplane.process` observers as "nft" (felix_nft_calls / _errors).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from calico.dataplane.nftables.libnft import LibNft, LibNftError
from calico.dataplane.nftables.names import FAMILY, TABLE
from calico.dataplane.nftables.ops import Op, to_text
from calico.dataplane.process import ToolError, report, run_tool

_LIST = f"list table {FAMILY} {TABLE}"
_LIST_COUNTERS = f"list counters table {FAMILY} {TABLE}"


class NftError(ToolError):
    """nft refused a transaction or a listing; the message is nft's."""


class NftTransport(Protocol):
    async def run(self, ops: Sequence[Op]) -> None:
        """Apply `ops` as one atomic transaction; NftError (and nothing applied) when nft refuses any of it."""
        ...

    async def list_table(self) -> dict[str, Any] | None:
        """Calico's table as `nft -j list table inet calico` shows it, or None when it does not exist."""
        ...

    async def list_counters(self) -> dict[str, Any] | None:
        """The table's named counters as `nft -j list counters table inet calico` shows them (None: no table)."""
        ...

    def close(self) -> None: ...


def _absent(error: str) -> bool:
    return "No such file or directory" in error


class LibNftTransport:
    """libnftables in-process, in the named namespace (None: this process's own)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._lib: LibNft | None = LibNft(netns)

    async def _call(self, text: str, json_output: bool = False) -> str:
        if self._lib is None:
            raise NftError("libnftables transport closed")
        started = time.perf_counter()
        try:
            out = await self._lib.run(text, json_output=json_output)
        except LibNftError as e:
            report("nft", time.perf_counter() - started, False)
            raise NftError(str(e)) from None
        report("nft", time.perf_counter() - started, True)
        return out

    async def run(self, ops: Sequence[Op]) -> None:
        if ops:
            await self._call(to_text(ops))

    async def list_table(self) -> dict[str, Any] | None:
        return await self._list(_LIST)

    async def list_counters(self) -> dict[str, Any] | None:
        return await self._list(_LIST_COUNTERS)

    async def _list(self, command: str) -> dict[str, Any] | None:
        try:
            return json.loads(await self._call(command, json_output=True))  # type: ignore[no-any-return]
        except NftError as e:
            if _absent(str(e)):
                return None
            raise

    def close(self) -> None:
        """Release the context and its thread (which holds a reference to the namespace)."""
        if self._lib is not None:
            self._lib.close()
            self._lib = None


class SpawnTransport:
    """`nft` spawned per call (`ip netns exec NS nft ...` for a named namespace)."""

    def __init__(self, netns: str | None = None, nft: str = "nft") -> None:
        self.netns = netns
        self.nft = nft

    async def run(self, ops: Sequence[Op]) -> None:
        if ops:
            try:
                await run_tool(self.netns, [self.nft, "-f", "-"], to_text(ops))
            except ToolError as e:
                raise NftError(str(e)) from None

    async def list_table(self) -> dict[str, Any] | None:
        return await self._list(_LIST)

    async def list_counters(self) -> dict[str, Any] | None:
        return await self._list(_LIST_COUNTERS)

    async def _list(self, command: str) -> dict[str, Any] | None:
        try:  # `nft -j -f` would parse its input as JSON: a listing command goes as argv
            out = (await run_tool(self.netns, [self.nft, "-j", *command.split()]))[1]
        except ToolError as e:
            if _absent(str(e)):
                return None
            raise NftError(str(e)) from None
        return json.loads(out)  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


def default_transport(netns: str | None) -> NftTransport:
    """libnftables when the library loads, else a spawned `nft` per call."""
    return LibNftTransport(netns) if LibNft.available() else SpawnTransport(netns)

"""iptables + ipset dataplane: Calico's `cali-` chains in the filter table and `cali40`/`cali60` ipsets.

render / ipsets (pure: state -> chains, sets, restore text) -> plan (pure: full or incremental
transactions) -> backend (the only process I/O: iptables-restore/-save, ipset). `Backend` is the interface
this backend shares with `calico.dataplane.nftables.NftBackend`, so the agent can pick either.
"""

from __future__ import annotations

from typing import Protocol

from calico.dataplane.iptables.backend import BACKENDS, IptablesBackend, IptablesError
from calico.dataplane.state import DesiredState


class Backend(Protocol):
    """What the agent needs from a dataplane backend (NftBackend and IptablesBackend both fit)."""

    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None: ...

    async def apply(self, state: DesiredState) -> object: ...

    async def read_back(self) -> object: ...

    async def check_and_repair(self, state: DesiredState) -> bool: ...


__all__ = ["BACKENDS", "Backend", "IptablesBackend", "IptablesError"]

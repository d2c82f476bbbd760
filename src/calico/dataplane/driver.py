"""The kernel dataplane driver Felix runs: calculation-graph events in, one firewall transaction per batch out.

Enters: batches of `calico.calculation.events`. Leaves: the host namespace's Calico table (nftables or
iptables + ipset, through a firewall backend) and, when a route manager is given, workload routes and sysctls.

Restart safety: at start it only reads back. If Calico's table is absent it installs the fail-closed table
(every workload interface dropped); if present (the agent restarted) it leaves it alone, so allowed traffic
keeps flowing. Nothing is programmed from a partial view: events are folded into the desired state until
`InSync`, then the whole state goes to the kernel in one atomic transaction, and only then are leftovers
(chains, sets, routes of endpoints that no longer exist) removed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from calico.calculation import events as ev
from calico.dataplane.state import DesiredState

log = logging.getLogger(__name__)


class FirewallBackend(Protocol):
    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None: ...
    async def apply(self, state: DesiredState) -> Any: ...
    async def read_back(self) -> Any: ...
    async def check_and_repair(self, state: DesiredState) -> bool: ...


class RouteBackend(Protocol):
    async def start(self) -> None: ...
    async def update(self, endpoints: Mapping[ev.WorkloadEndpointID, ev.WorkloadEndpointUpdate]) -> None: ...
    async def reconcile(self) -> None: ...
    async def refresh(self) -> None: ...
    async def stop(self) -> None: ...
    def endpoint_status(self) -> Mapping[ev.WorkloadEndpointID, str]: ...


class KernelDriver:
    def __init__(self, firewall: FirewallBackend, routes: RouteBackend | None = None) -> None:
        self.state = DesiredState()
        self.firewall = firewall
        self.routes = routes
        self._programmed = False  # has the in-sync state reached the kernel at least once?

    async def start(self) -> None:
        if await self.firewall.read_back() is None:
            await self.firewall.install_fail_closed(self.state.interface_prefixes)
        else:
            log.info("found Calico's table from a previous run; keeping it until in sync")
        if self.routes is not None:
            await self.routes.start()

    async def apply(self, events: Sequence[ev.DataplaneEvent]) -> None:
        self.state.apply_all(events)
        if not self.state.in_sync:
            return  # never program a partial view
        await self.firewall.apply(self.state)
        if self.routes is not None:
            await self.routes.update(self.state.endpoints)
            if not self._programmed:
                await self.routes.reconcile()  # leftovers go only once the full state is in
        self._programmed = True

    async def refresh(self) -> None:
        """Read back and repair drift (someone deleted our table, a chain, a set, a route)."""
        if not self._programmed:
            if await self.firewall.read_back() is None:
                await self.firewall.install_fail_closed(self.state.interface_prefixes)
            return
        await self.firewall.check_and_repair(self.state)
        if self.routes is not None:
            await self.routes.refresh()

    def endpoint_status(self) -> Mapping[ev.WorkloadEndpointID, str]:
        return {} if self.routes is None else self.routes.endpoint_status()

    async def stop(self) -> None:
        """Leave every rule and route in place: the kernel keeps enforcing while the agent is away."""
        if self.routes is not None:
            await self.routes.stop()


def make_firewall(kind: str, netns: str | None, iptables_backend: str = "nft") -> FirewallBackend:
    if kind == "nftables":
        from calico.dataplane.nftables.backend import NftBackend

        return NftBackend(netns)
    if kind == "iptables":
        from calico.dataplane.iptables.backend import IptablesBackend

        return IptablesBackend(netns, iptables_backend)
    raise ValueError(f"unknown dataplane backend {kind!r}: nftables or iptables")

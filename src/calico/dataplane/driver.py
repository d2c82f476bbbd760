"""The kernel dataplane driver Felix runs: calculation-graph events in, one firewall transaction per batch out.

Enters: its `DataplaneConfig` (once, when built: `factory.create_driver` chooses and builds the backends),
batches of `calico.calculation.events` (`ConfigUpdate`s among them are ignored: see `config.py`), and the
host's interface addresses (an `AddressSource`, for host endpoints matched by expectedIPs). Leaves: the host
namespace's Calico table (nftables or iptables + ipset, through a firewall backend; natOutgoing included) and,
when given, workload routes and sysctls (a route manager) and the network between hosts: tunnel devices,
FDB and neighbour entries, routes to other hosts' blocks (a network manager, `calico.dataplane.network`).

Restart safety: at start it only reads back. If Calico's table is absent it installs the fail-closed table
(every workload interface dropped); if present (the agent restarted) it leaves it alone, so allowed traffic
keeps flowing. Nothing is programmed from a partial view: events are folded into the desired state until
`InSync`, then the whole state goes to the kernel in one atomic transaction, and only then are leftovers
(chains, sets, routes of endpoints that no longer exist) removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.counters import RawCount
from calico.dataplane.state import DesiredState

log = logging.getLogger(__name__)


class FirewallBackend(Protocol):
    """nftables and iptables backends both fit. `install_fail_closed` must keep a previous run's rules."""

    async def install_fail_closed(self, prefixes: tuple[str, ...] = ("cali",)) -> None: ...
    async def apply(self, state: DesiredState) -> Any: ...
    async def read_back(self) -> Any: ...
    async def check_and_repair(self, state: DesiredState) -> bool: ...
    async def read_counters(self) -> list[RawCount]: ...


class RouteBackend(Protocol):
    async def start(self) -> None: ...
    async def update(self, endpoints: Mapping[ev.WorkloadEndpointID, ev.WorkloadEndpointUpdate]) -> None: ...
    async def reconcile(self) -> None: ...
    async def refresh(self) -> None: ...
    async def stop(self) -> None: ...
    def endpoint_status(self) -> Mapping[ev.WorkloadEndpointID, str]: ...


class NetworkBackend(Protocol):
    """The network between hosts (`calico.dataplane.network.NetworkManager`): fed the state and what changed."""

    async def start(self) -> None: ...
    async def update(
        self, state: DesiredState, vteps: Iterable[str], routes: Iterable[str], pools: bool
    ) -> None: ...
    async def refresh(self) -> None: ...
    async def stop(self) -> None: ...


class AddressSource(Protocol):
    """The host's interface addresses (netlink.addresses.HostAddressMonitor)."""

    on_change: Callable[[dict[str, frozenset[str]]], Awaitable[None]] | None

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def addresses(self) -> dict[str, frozenset[str]]: ...


class KernelDriver:
    """Programs one namespace with `firewall` (and `routes`, `addresses`, `network` when given) as `config` says."""

    def __init__(
        self,
        firewall: FirewallBackend,
        config: DataplaneConfig,
        routes: RouteBackend | None = None,
        addresses: AddressSource | None = None,
        network: NetworkBackend | None = None,
    ) -> None:
        self.state = DesiredState(config)
        self.firewall = firewall
        self.routes = routes
        self.addresses = addresses
        self.network = network
        self._programmed = False  # has the in-sync state reached the kernel at least once?
        self._lock = asyncio.Lock()  # the daemon's batches and address news never program side by side
        self.on_stop: list[Callable[[], object]] = []  # e.g. unhook metrics

    async def start(self) -> None:
        # Restart-safe by contract: a table from a previous run is kept until the first full apply.
        await self.firewall.install_fail_closed(self.state.config.interface_prefixes)
        if self.routes is not None:
            await self.routes.start()
        if self.network is not None:
            await self.network.start()  # reads back only: a previous run's tunnel stays until the first apply
        if self.addresses is not None:
            self.addresses.on_change = self._on_addresses
            await self.addresses.start()  # before the first apply: name-less host endpoints resolve at once
            self.state.set_host_addresses(self.addresses.addresses())

    async def _on_addresses(self, addresses: dict[str, frozenset[str]]) -> None:
        """An interface address came or went: re-resolve host endpoints matched by expectedIPs."""
        async with self._lock:
            if self.state.set_host_addresses(addresses) and self._programmed:
                try:
                    await self.firewall.apply(self.state)
                except Exception:
                    # The backend forgot its model: the next batch or refresh replaces the whole table.
                    log.exception("applying host endpoint changes after an address change failed")

    async def apply(self, events: Sequence[ev.DataplaneEvent]) -> None:
        async with self._lock:
            await self._apply_locked(events)

    async def _apply_locked(self, events: Sequence[ev.DataplaneEvent]) -> None:
        self.state.apply_all(events)
        if not self.state.in_sync:
            return  # never program a partial view
        # Independent kernel objects: program them side by side, so a new workload's latency is the slowest of
        # them, not their sum. A route before its rules is safe: the dispatch drops unknown interfaces.
        # The firewall takes the dirty record, so the network's share of it is copied first.
        d = self.state.dirty
        work = []
        if self.network is not None and (d.vteps or d.routes or d.pools or not self._programmed):
            work.append(self.network.update(self.state, set(d.vteps), set(d.routes), bool(d.pools)))
        work.append(self.firewall.apply(self.state))
        if self.routes is not None:
            work.append(self.routes.update(self.state.endpoints))
        await asyncio.gather(*work)
        if self.routes is not None and not self._programmed:
            await self.routes.reconcile()  # leftovers go only once the full state is in
        self._programmed = True

    async def refresh(self) -> None:
        """Read back and repair drift (someone deleted our table, a chain, a set, a route)."""
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        if not self._programmed:
            await self.firewall.install_fail_closed(self.state.config.interface_prefixes)
            return
        await self.firewall.check_and_repair(self.state)
        if self.routes is not None:
            await self.routes.refresh()
        if self.network is not None:
            await self.network.refresh()

    def endpoint_status(self) -> Mapping[ev.WorkloadEndpointID, str]:
        return {} if self.routes is None else self.routes.endpoint_status()

    async def read_counters(self) -> list[RawCount]:
        """The kernel counters of every verdict rule (`calico.dataplane.counters`). Not under the apply lock: a
        read between two transactions sees one or the other, and never delays a workload's programming."""
        return await self.firewall.read_counters()

    async def stop(self) -> None:
        """Leave every rule and route in place: the kernel keeps enforcing while the agent is away."""
        if self.routes is not None:
            await self.routes.stop()
        if self.network is not None:
            await self.network.stop()
        if self.addresses is not None:
            await self.addresses.stop()
        for fn in self.on_stop:
            fn()
        self.on_stop.clear()

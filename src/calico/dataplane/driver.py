"""The kernel dataplane driver Felix runs: calculation-graph events in, one firewall transaction per batch out.

Enters: batches of `calico.calculation.events`, and the host's interface addresses (an `AddressSource`, for
host endpoints matched by expectedIPs). Leaves: the host namespace's Calico table (nftables or
iptables + ipset, through a firewall backend) and, when a route manager is given, workload routes and sysctls.

Restart safety: at start it only reads back. If Calico's table is absent it installs the fail-closed table
(every workload interface dropped); if present (the agent restarted) it leaves it alone, so allowed traffic
keeps flowing. Nothing is programmed from a partial view: events are folded into the desired state until
`InSync`, then the whole state goes to the kernel in one atomic transaction, and only then are leftovers
(chains, sets, routes of endpoints that no longer exist) removed.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from calico.calculation import events as ev
from calico.dataplane.state import DesiredState

if TYPE_CHECKING:
    from calico.felix.config import FelixConfig
    from calico.felix.metrics import FelixMetrics

log = logging.getLogger(__name__)


class FirewallBackend(Protocol):
    """nftables and iptables backends both fit. `install_fail_closed` must keep a previous run's rules."""

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


class AddressSource(Protocol):
    """The host's interface addresses (netlink.addresses.HostAddressMonitor)."""

    on_change: Callable[[dict[str, frozenset[str]]], Awaitable[None]] | None

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def addresses(self) -> dict[str, frozenset[str]]: ...


class KernelDriver:
    """`settings` (Felix's names, e.g. InterfacePrefix) come from the agent's merged configuration; the graph's
    ConfigUpdate carries only the datastore's layers, so it must not override them here."""

    def __init__(
        self,
        firewall: FirewallBackend,
        routes: RouteBackend | None = None,
        settings: Mapping[str, object] | None = None,
        addresses: AddressSource | None = None,
    ) -> None:
        self.state = DesiredState()
        self.state.config.update(settings or {})
        self.firewall = firewall
        self.routes = routes
        self.addresses = addresses
        self._programmed = False  # has the in-sync state reached the kernel at least once?
        self._lock = asyncio.Lock()  # the daemon's batches and address news never program side by side
        self.on_stop: list[Callable[[], object]] = []  # e.g. unhook metrics

    async def start(self) -> None:
        # Restart-safe by contract: a table from a previous run is kept until the first full apply.
        await self.firewall.install_fail_closed(self.state.interface_prefixes)
        if self.routes is not None:
            await self.routes.start()
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
        self.state.apply_all(e for e in events if not isinstance(e, ev.ConfigUpdate))
        if not self.state.in_sync:
            return  # never program a partial view
        if self.routes is None:
            await self.firewall.apply(self.state)
        else:
            # Independent kernel objects: program them side by side, so a new workload's latency is the slower
            # of the two, not their sum. A route before its rules is safe: the dispatch drops unknown interfaces.
            await asyncio.gather(self.firewall.apply(self.state), self.routes.update(self.state.endpoints))
            if not self._programmed:
                await self.routes.reconcile()  # leftovers go only once the full state is in
        self._programmed = True

    async def refresh(self) -> None:
        """Read back and repair drift (someone deleted our table, a chain, a set, a route)."""
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        if not self._programmed:
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
        if self.addresses is not None:
            await self.addresses.stop()
        for fn in self.on_stop:
            fn()
        self.on_stop.clear()


ALLOW_INITIAL_NETNS = "CALICO_ALLOW_INITIAL_NETNS"


def in_initial_netns() -> bool:
    """True unless this process runs in a named namespace (`ip netns`, /run/netns/*). /proc/1/ns is not
    always readable (sandboxes), so "not a named namespace" stands for "the machine's own namespace"."""
    try:
        mine = os.stat("/proc/self/ns/net")
    except OSError:
        return True
    netns_dir = Path("/run/netns")
    for entry in netns_dir.iterdir() if netns_dir.is_dir() else ():
        try:
            st = entry.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
            return False
    return True


def create_driver(config: FelixConfig, metrics: FelixMetrics, netns: str | None = None) -> KernelDriver:
    """Felix's driver for `config.dataplane_backend`, programming the namespace the agent runs in.

    Interlock: the agent refuses to program the machine's initial network namespace unless
    CALICO_ALLOW_INITIAL_NETNS=1 says this is a real host (on a development machine everything runs in labs)."""
    if netns is None and in_initial_netns() and os.environ.get(ALLOW_INITIAL_NETNS) != "1":
        raise RuntimeError(
            f"refusing to program the machine's initial network namespace; set {ALLOW_INITIAL_NETNS}=1 on a real "
            "host, or run calico-felix inside a host namespace (calico-lab does)"
        )
    from calico.dataplane.netlink import RouteManager
    from calico.dataplane.netlink.addresses import HostAddressMonitor
    from calico.dataplane.process import observe

    unobserve = observe(metrics.observe_tool)  # felix_nft_calls, felix_iptables_restore_calls, felix_ipset_calls...

    prefixes = tuple(p.strip() for p in config.interface_prefix.split(",") if p.strip())
    iptables_backend = "legacy" if config.iptables_backend == "Legacy" else "nft"
    firewall = make_firewall(config.dataplane_backend, netns, iptables_backend)
    routes = RouteManager(netns, prefixes, refresh_interval=config.route_refresh_interval)
    settings: dict[str, object] = {
        "InterfacePrefix": config.interface_prefix,
        "DefaultEndpointToHostAction": config.default_endpoint_to_host_action,
        "FailsafeInboundHostPorts": config.failsafe_inbound_host_ports,
        "FailsafeOutboundHostPorts": config.failsafe_outbound_host_ports,
    }
    if openstack_active(config):
        # Metadata DNAT only for OpenStack, as in Felix; the renderers read these two keys.
        settings["MetadataAddr"] = config.metadata_addr
        settings["MetadataPort"] = config.metadata_port
    driver = KernelDriver(firewall, routes, settings, HostAddressMonitor(netns, prefixes))
    driver.on_stop.append(unobserve)
    return driver


def openstack_active(config: FelixConfig) -> bool:
    """Felix's test: a region is set, the interface prefix is OpenStack's `tap`, or metadata is not default."""
    return bool(
        config.openstack_region
        or any(p.strip().startswith("tap") for p in config.interface_prefix.split(","))
        or config.metadata_addr != "127.0.0.1"
        or config.metadata_port != 8775
    )


def make_firewall(kind: str, netns: str | None, iptables_backend: str = "nft") -> FirewallBackend:
    if kind == "nftables":
        from calico.dataplane.nftables.backend import NftBackend

        return NftBackend(netns)
    if kind == "iptables":
        from calico.dataplane.iptables.backend import IptablesBackend

        return IptablesBackend(netns, iptables_backend)
    raise ValueError(f"unknown dataplane backend {kind!r}: nftables or iptables")

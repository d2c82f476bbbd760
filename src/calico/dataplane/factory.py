"""Building the kernel dataplane: the one place the firewall backend is chosen.

In: a `DataplaneConfig` (its `backend` names the firewall: "nftables" or "iptables"), the network namespace
to program (None: the one this process runs in) and, optionally, an observer for every kernel tool call
(Felix's metrics). Out: a `KernelDriver` with its firewall backend, route manager, network manager (tunnels and
routes between hosts) and host address monitor, none of them started. Only the chosen backend's package is imported.

Interlock: a driver for the process's own namespace is refused when that is the machine's initial namespace,
unless CALICO_ALLOW_INITIAL_NETNS=1 says this is a real host (on a development machine everything runs in labs).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from calico.dataplane.config import DataplaneConfig
from calico.dataplane.driver import FirewallBackend, KernelDriver
from calico.dataplane.process import ToolObserver, observe

ALLOW_INITIAL_NETNS = "CALICO_ALLOW_INITIAL_NETNS"

# Backend name -> the module whose `create_firewall(config, netns)` builds it.
FIREWALL_MODULES: dict[str, str] = {
    "nftables": "calico.dataplane.nftables.backend",
    "iptables": "calico.dataplane.iptables.backend",
}

FirewallFactory = Callable[[DataplaneConfig, str | None], FirewallBackend]


class BackendUnavailable(RuntimeError):
    """The chosen firewall backend cannot be loaded; the message says which and why."""


def firewall_factory(backend: str) -> FirewallFactory:
    """The chosen backend's `create_firewall`, imported now; BackendUnavailable when that is impossible."""
    module_name = FIREWALL_MODULES.get(backend)
    if module_name is None:
        raise BackendUnavailable(
            f"unknown dataplane backend {backend!r}: expected one of {', '.join(FIREWALL_MODULES)}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BackendUnavailable(f"dataplane backend {backend!r} is not available: cannot import {module_name} ({e})"
                                 ) from e
    factory = getattr(module, "create_firewall", None)
    if not callable(factory):
        raise BackendUnavailable(
            f"dataplane backend {backend!r} is not available: {module_name} has no create_firewall(config, netns)")
    return factory  # type: ignore[no-any-return]


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


def create_driver(
    config: DataplaneConfig, netns: str | None = None, *, tool_observer: ToolObserver | None = None
) -> KernelDriver:
    """The driver for `config`, programming `netns` (None: this process's namespace, subject to the interlock).
    `tool_observer` sees every kernel tool call until the driver stops."""
    make_firewall = firewall_factory(config.backend)  # a missing backend is the first thing reported
    if netns is None and in_initial_netns() and os.environ.get(ALLOW_INITIAL_NETNS) != "1":
        raise RuntimeError(
            f"refusing to program the machine's initial network namespace; set {ALLOW_INITIAL_NETNS}=1 on a real "
            "host, or run calico-felix inside a host namespace (calico-lab does)"
        )
    from calico.dataplane.netlink import RouteManager  # pyroute2: imported only when a driver is built
    from calico.dataplane.netlink.addresses import HostAddressMonitor
    from calico.dataplane.network import NetworkManager
    from calico.dataplane.network.kernel import NetlinkKernel

    prefixes = config.interface_prefixes
    routes = RouteManager(netns, prefixes, refresh_interval=config.route_refresh_interval,
                          route_localnet=config.metadata is not None and config.metadata.loopback)
    network = NetworkManager(config, NetlinkKernel(netns, prefixes), refresh_interval=config.route_refresh_interval)
    driver = KernelDriver(make_firewall(config, netns), config, routes, HostAddressMonitor(netns, prefixes), network)
    if tool_observer is not None:
        driver.on_stop.append(observe(tool_observer))  # felix_nft_calls, felix_iptables_restore_calls, ...
    return driver

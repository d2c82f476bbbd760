"""The agent's loop: datastore → `AgentState` → `render` → interface, files, dnsmasq.

In: a `KVStore` (followed by a `Syncer`: snapshot, watch, resync after faults), the agent's `Settings` and
`Paths`, and the two I/O seams (`GatewayInterface`, `DnsmasqControl`). Out, once the syncer is in sync and
after every burst of changes (`debounce`):

    served subnets or ranges changed   interface addresses made exact, files written, dnsmasq restarted
    only hosts or options changed      files written, SIGHUP (dnsmasq keeps running and keeps its leases)
    no subnet served any more          dnsmasq stopped, the interface removed

Nothing is written before the first in-sync (a half-read datastore would drop hosts). A failure to program
the interface is logged and retried every `retry_interval` seconds; problems in the data (subnets that cannot
be served) are logged once when they appear and once when they clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from calico.datastore.kv import KVStore
from calico.datastore.syncer import StatusUpdate, Syncer, SyncStatus
from calico.dhcp.dnsmasq import DnsmasqControl, write_files
from calico.dhcp.interface import GatewayInterface, InterfaceError
from calico.dhcp.render import DnsmasqConfig, Paths, Settings, argv, render
from calico.dhcp.state import AgentState

__all__ = ["DhcpAgent"]

log = logging.getLogger(__name__)


class DhcpAgent:
    def __init__(self, kv: KVStore, hostname: str, region: str, settings: Settings, paths: Paths,
                 interface: GatewayInterface, dnsmasq: DnsmasqControl, binary: str = "dnsmasq",
                 debounce: float = 0.05, retry_interval: float = 2.0) -> None:
        self.state = AgentState(hostname, region)
        self.syncer = Syncer(kv, self.state.prefixes())
        self.settings = settings
        self.paths = paths
        self.interface = interface
        self.dnsmasq = dnsmasq
        self.binary = binary
        self.debounce = debounce
        self.retry_interval = retry_interval
        self.in_sync = False
        self.applied: DnsmasqConfig | None = None  # what dnsmasq runs with (None: not running)
        self.restarts = 0
        self.reloads = 0
        self._changed = asyncio.Event()
        self._problems: set[str] = set()
        self._first = True

    async def run(self) -> None:
        """Follow the datastore and keep dnsmasq current, until cancelled (dnsmasq is stopped then)."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._follow())
                tasks.create_task(self._apply_loop())
        finally:
            await self.dnsmasq.stop()

    async def _follow(self) -> None:
        async for event in self.syncer.updates():
            if isinstance(event, StatusUpdate):
                if event.status is SyncStatus.IN_SYNC and not self.in_sync:
                    self.in_sync = True
                    self._changed.set()
            else:
                changes = self.state.apply(event)
                if changes.subnets or changes.hosts:
                    self._changed.set()

    async def _apply_loop(self) -> None:
        while True:
            await self._changed.wait()
            if not self.in_sync:
                self._changed.clear()
                continue
            await asyncio.sleep(self.debounce)  # let the rest of a burst arrive
            self._changed.clear()
            try:
                await self.apply()
            except (InterfaceError, OSError) as e:  # netlink refused, or the state directory is unwritable
                log.error("%s; retrying in %.0fs", e, self.retry_interval)
                self.applied = None  # everything again next time
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.retry_interval)
                self._changed.set()

    async def apply(self) -> None:
        """Bring the interface, the files and dnsmasq to the current state."""
        config = render(self.state.subnets, self.state.hosts.values(), self.settings)
        self._report(set(config.problems))
        if not config.ranges:
            if self.applied is not None or self._first:  # (at the first, an earlier run's interface may be left)
                log.info("no subnet to serve: dnsmasq stopped, interface %s removed", self.settings.interface)
                await self.dnsmasq.stop()
                await self.interface.remove()
            self.applied = None
            self._first = False
            return
        self._first = False
        previous = self.applied
        if previous is not None and previous.restart_key == config.restart_key and self.dnsmasq.pid is not None:
            if (previous.hosts, previous.opts) != (config.hosts, config.opts):
                write_files(self.paths, config.hosts, config.opts)
                self.dnsmasq.reload()
                self.reloads += 1
                log.info("dnsmasq reloaded: %d host lines", config.hosts.count("\n"))
            self.applied = config
            return
        await self.interface.ensure(config.addresses)
        write_files(self.paths, config.hosts, config.opts)
        await self.dnsmasq.start(argv(config, self.paths, self.settings, self.binary))
        self.restarts += 1
        self.applied = config
        log.info("dnsmasq (re)started for %d subnets, %d host lines", len(config.ranges), config.hosts.count("\n"))

    def _report(self, problems: set[str]) -> None:
        for p in sorted(problems - self._problems):
            log.warning("%s", p)
        for p in sorted(self._problems - problems):
            log.info("resolved: %s", p)
        self._problems = problems

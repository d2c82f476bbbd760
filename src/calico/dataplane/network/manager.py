"""The network manager: keeps one namespace's tunnel devices, FDB, neighbours and Felix's routes between hosts
in line with the desired state, and writes the workload MTU.

In: the `DataplaneConfig` (once), a kernel (`kernel.NetlinkKernel`, or `fake.FakeNetlink` in tests), and from
the driver, after each batch: the `DesiredState` and which of its VTEPs, routes and pools changed. Out: the
kernel objects (`desired` says which, `diff` plans the batch, the kernel runs it) and the MTU file
(`mtufile`), when the config names one.

Lifecycle: `start()` reads back what the kernel holds and changes nothing: a restarting Felix keeps the tunnel
and its routes until the first `update()`, which the driver makes only once the datastore is in sync (it is
then a full pass: leftovers of a previous run that nothing wants go). Later updates plan only what changed.
`refresh()` (the driver's, and every `refresh_interval` s) re-reads the kernel and repairs every difference:
a deleted device is re-created with its entries and routes, a changed MTU set back, a foreign change to one of
our routes undone. Failures stay marked and are retried with back-off (1 s doubling up to the refresh
interval). `stop()` leaves everything in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Protocol

from calico.dataplane.config import DataplaneConfig
from calico.dataplane.network.desired import DesiredNetwork
from calico.dataplane.network.diff import NetPlan, NetworkPlanner
from calico.dataplane.network.model import HostLink, Keys, NetworkView
from calico.dataplane.network.mtufile import write_mtu_file
from calico.dataplane.state import DesiredState

log = logging.getLogger(__name__)

FIRST_RETRY = 1.0


class NetworkKernel(Protocol):
    """What the manager needs of the kernel (`kernel.NetlinkKernel`; `fake.FakeNetlink` in tests)."""

    async def open(self) -> None: ...
    def close(self) -> None: ...
    async def read(self) -> tuple[NetworkView, tuple[HostLink, ...]]: ...
    async def apply(self, plan: NetPlan) -> Keys: ...


class NetworkManager:
    def __init__(self, config: DataplaneConfig, kernel: NetworkKernel, *, refresh_interval: float = 90.0) -> None:
        self.config = config
        self.kernel = kernel
        self.refresh_interval = refresh_interval
        self.desired = DesiredNetwork(config)
        self.planner = NetworkPlanner()
        self._links: tuple[HostLink, ...] = ()
        self._state: DesiredState | None = None  # set by the first update: until then nothing is changed
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._retry_delay: float | None = None  # set while something failed
        self._mtu_written: int | None = None
        self.applied_plans = 0
        self.last_plan: NetPlan | None = None

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.kernel.open()
        async with self._lock:
            await self._read_back()
        if self.refresh_interval > 0:
            self._task = asyncio.create_task(self._periodic())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.kernel.close()

    # --- desired state ------------------------------------------------------------------------------------

    async def update(self, state: DesiredState, vteps: Iterable[str] = (), routes: Iterable[str] = (),
                     pools: bool = False) -> None:
        """`state` is in sync; `vteps`, `routes` and `pools` changed since the last call (the first call looks at
        everything)."""
        async with self._lock:
            first = self._state is None
            self._state = state
            self.planner.mark(self.desired.update(state, self._links, vteps, routes, pools))
            await self._apply_locked(full=first)

    async def refresh(self) -> None:
        """Re-read the kernel and repair whatever differs from the desired state."""
        async with self._lock:
            await self._read_back()
            if self._state is not None:
                self.planner.mark(self.desired.update(self._state, self._links))
                await self._apply_locked(full=True)

    @property
    def retry_in(self) -> float | None:
        """Seconds until the next retry of something that failed (None: nothing failed)."""
        return self._retry_delay

    # --- internals ----------------------------------------------------------------------------------------

    async def _read_back(self) -> None:
        view, self._links = await self.kernel.read()
        self.planner.set_kernel(view)

    async def _apply_locked(self, full: bool) -> None:
        plan = self.planner.plan(self.desired.view, full=full)
        if plan:
            try:
                failed = await self.kernel.apply(plan)
            except BaseException:
                # A broken socket or cancellation: what reached the kernel is unknown; re-read before retrying.
                self.planner.applied(plan, plan.keys())
                self._retry_delay = self._retry_delay or FIRST_RETRY
                raise
            self.planner.applied(plan, failed)
            self.applied_plans += 1
            self.last_plan = plan
            if failed:
                self._retry_delay = min(2 * self._retry_delay, self.refresh_interval or 60.0) \
                    if self._retry_delay else FIRST_RETRY
            else:
                self._retry_delay = None
        self._write_mtu()

    def _write_mtu(self) -> None:
        mtu = self.desired.workload_mtu
        path = self.config.mtu_file
        if path and mtu is not None and mtu != self._mtu_written and write_mtu_file(path, mtu):
            self._mtu_written = mtu

    async def _periodic(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh_interval
        while True:
            delay = next_refresh - loop.time()
            if self._retry_delay is not None:
                delay = min(delay, self._retry_delay)
            await asyncio.sleep(max(0.0, delay))
            try:
                if loop.time() >= next_refresh or self._retry_delay is not None:
                    # A retry re-reads too: after a failure the kernel is what it is, not what we planned.
                    next_refresh = loop.time() + self.refresh_interval
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("network refresh failed")
                self._retry_delay = self._retry_delay or FIRST_RETRY

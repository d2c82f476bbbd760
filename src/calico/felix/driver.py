"""The interface between the Felix daemon and a dataplane driver, and Felix's real driver.

Enters (into a driver): batches of `calico.calculation.events.DataplaneEvent`, in the graph's safe order,
never a `ConfigUpdate`: a driver gets its configuration once, when it is built (the kernel driver as a
`calico.dataplane.config.DataplaneConfig`), and Felix restarts on any change that concerns it.
Leaves (from a driver): kernel state, and each local workload endpoint's status for status reporting.

Contract the daemon relies on:
- `start()` reads back what the kernel has (a restarting agent finds its old rules) and must not flush:
  traffic keeps flowing on the old rules until the first `apply()`.
- `apply(events)` makes one kernel transaction per table for the whole batch. The first batch holds the
  whole start-of-day state and ends with `InSync` (the driver may then remove leftovers). If `apply`
  raises, the daemon retries later with the same events followed by newer ones, so re-applying an event
  must be harmless (every event is a whole-object update, a remove, or a set delta).
- `refresh()` reads the kernel back and repairs drift (someone else changed our table).
- `endpoint_status()` is cheap and synchronous: "up", "down" or "error" per local workload endpoint.
- `read_counters()` reads the verdict rules' kernel counters (`calico.dataplane.counters.RawCount`s), never
  under the apply lock.
- `stop()` releases resources and leaves the kernel state in place.

`kernel_driver` is the daemon's default factory: `calico.dataplane.factory.create_driver` for
`FelixConfig.dataplane_config()` (which chooses the backend and imports only that one), with every kernel
tool call counted in Felix's metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from calico.calculation.events import (
    DataplaneEvent,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.dataplane.counters import RawCount
from calico.dataplane.factory import create_driver
from calico.felix.config import FelixConfig
from calico.felix.metrics import FelixMetrics

__all__ = ["DataplaneDriver", "DriverFactory", "RecordingDriver", "kernel_driver"]


@runtime_checkable
class DataplaneDriver(Protocol):
    async def start(self) -> None: ...

    async def apply(self, events: Sequence[DataplaneEvent]) -> None: ...

    async def refresh(self) -> None: ...

    def endpoint_status(self) -> Mapping[WorkloadEndpointID, str]: ...

    async def read_counters(self) -> list[RawCount]: ...

    async def stop(self) -> None: ...


DriverFactory = Callable[[FelixConfig, FelixMetrics], DataplaneDriver]


def kernel_driver(config: FelixConfig, metrics: FelixMetrics) -> DataplaneDriver:
    """The kernel dataplane in the agent's own namespace. Raises `calico.dataplane.factory.BackendUnavailable`
    (the chosen backend cannot be loaded), ValueError (a setting cannot be programmed) or RuntimeError (the
    initial-namespace interlock), each with a message naming what is wrong."""
    return create_driver(config.dataplane_config(), tool_observer=metrics.observe_tool)


class RecordingDriver:
    """A driver that keeps everything it is asked to do, for tests (and dry runs).

    `fail_applies` makes the next N `apply` calls raise (after recording the attempt in `attempts`);
    `batches` holds only the batches that succeeded. Endpoints it has been told about report "up". `counts` is
    what `read_counters` returns (tests set it; `fail_reads` makes the next N reads raise)."""

    def __init__(self, fail_applies: int = 0, fail_refreshes: int = 0) -> None:
        self.fail_applies = fail_applies
        self.fail_refreshes = fail_refreshes
        self.attempts: list[list[DataplaneEvent]] = []
        self.batches: list[list[DataplaneEvent]] = []
        self.started = 0
        self.stopped = 0
        self.refreshes = 0
        self.endpoints: dict[WorkloadEndpointID, str] = {}
        self.counts: list[RawCount] = []
        self.fail_reads = 0
        self.counter_reads = 0

    async def start(self) -> None:
        self.started += 1

    async def apply(self, events: Sequence[DataplaneEvent]) -> None:
        self.attempts.append(list(events))
        if self.fail_applies > 0:
            self.fail_applies -= 1
            raise RuntimeError("injected apply failure")
        self.batches.append(list(events))
        for ev in events:
            if isinstance(ev, WorkloadEndpointUpdate):
                self.endpoints[ev.endpoint_id] = "up"
            elif isinstance(ev, WorkloadEndpointRemove):
                self.endpoints.pop(ev.endpoint_id, None)

    async def refresh(self) -> None:
        self.refreshes += 1
        if self.fail_refreshes > 0:
            self.fail_refreshes -= 1
            raise RuntimeError("injected refresh failure")

    def endpoint_status(self) -> Mapping[WorkloadEndpointID, str]:
        return dict(self.endpoints)

    async def read_counters(self) -> list[RawCount]:
        self.counter_reads += 1
        if self.fail_reads > 0:
            self.fail_reads -= 1
            raise RuntimeError("injected counter read failure")
        return list(self.counts)

    async def stop(self) -> None:
        self.stopped += 1

    @property
    def events(self) -> list[DataplaneEvent]:
        """Every successfully applied event, in order."""
        return [ev for batch in self.batches for ev in batch]

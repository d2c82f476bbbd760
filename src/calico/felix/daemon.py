"""The Felix daemon: datastore in, calculation graph in the middle, dataplane driver out.

Enters: the local `FelixConfig` (environment and config file), an open `KVStore`, and a factory for the
dataplane driver. Leaves: batches of dataplane events applied through the driver, status keys in the
datastore, health and Prometheus endpoints, and an exit code from `run()`.

    KVStore ──► Syncer ──► queue ──► main loop ─┬─► CalcGraph.on_update / on_in_sync
    (snapshot+watch)      (pump task)           ├─► FelixConfiguration default / node.<host> ─► re-merge config
                                                ├─► CalcGraph.flush() ──► driver.apply(batch)  (one per batch)
                                                └─► driver.refresh() every IptablesRefreshInterval
    StatusReporter (own task): status key with a lease; endpoint status from driver.endpoint_status()
    PolicyCounters: the verdict rules' kernel counters (driver.read_counters()), read at every refresh, before a
    scrape (cached SCRAPE_MAX_AGE) and by the CounterPublisher (own task: .../policy_counters, leased)
    FlowLogCollector (own task, when flow logs are on): NFLOG + conntrack -> records every FlowLogsFlushInterval;
    fed the datastore's workload and host endpoints (flowlogs.EndpointIndex) to name both ends of a flow
    HTTP servers (own tasks):  /liveness, /readiness (HealthAggregator); /metrics (FelixMetrics)

Batching: the main loop takes everything the syncer has queued, feeds it all to the graph, then makes one
`flush()` and one `driver.apply()`. Nothing is applied before the datastore is in sync, so start-of-day is
one batch holding the whole state and ending with `InSync`; until then the kernel keeps the rules the last
run left (the driver's `start()` reads them back and never flushes).

Faults: a failed `apply` is counted (`felix_int_dataplane_failures`), logged and retried with exponential
backoff, with the same events followed by newer ones; a bad datastore value is logged by whoever decodes
it and never stops the loop; datastore outages are the syncer's business (it resyncs).

Configuration: FelixConfiguration `default` and `node.<hostname>` are read once before the driver is made
(so the backend choice is known), then followed through the syncer. A change is re-merged with the local
sources; if it touches a parameter that needs a restart (`config.restart_needed`), the daemon stops cleanly
and `run()` returns EXIT_CONFIG_CHANGED so the supervisor starts it again, as Calico's Felix does; other
changes apply live (log levels, status reporting, the refresh interval), and none of those concerns the
dataplane. The driver gets its configuration once, from the factory (`FelixConfig.dataplane_config()`), so
the graph's `ConfigUpdate` events (a datastore-only view) are not passed on: the driver never sees one.

SIGTERM (via `request_stop()`): finish the batch in flight, stop, leave the dataplane as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from calico.calculation.events import (
    ConfigUpdate,
    DataplaneEvent,
    HostEndpointRemove,
    HostEndpointUpdate,
    IPSetRemove,
    IPSetUpdate,
    PolicyID,
    PolicyRemove,
    PolicyUpdate,
    ProfileRemove,
    ProfileUpdate,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.dataplane.ruleids import OwnerIndex
from calico.datastore.keys import IPAM_HOST_PREFIX, RESOURCE_PREFIX, parse_key
from calico.datastore.kv import KVError, KVStore
from calico.datastore.syncer import StatusUpdate, Syncer, SyncerEvent, SyncStatus, Update
from calico.felix.config import FelixConfig, diff, parse_datastore_value, restart_needed
from calico.felix.counters import SCRAPE_MAX_AGE, CounterPublisher, PolicyCounters
from calico.felix.driver import DataplaneDriver, DriverFactory
from calico.felix.health import HealthAggregator, health_server
from calico.felix.httpserver import HttpServer
from calico.felix.logs import LogSetup
from calico.felix.metrics import RESYNC_STATE, FelixMetrics, metrics_server
from calico.felix.pending import PendingVerdicts
from calico.felix.status import EndpointStatusID, StatusReporter
from calico.flowlogs.collector import FlowLogCollector, FlowLogSettings
from calico.flowlogs.endpoints import PLURALS as FLOW_ENDPOINT_PLURALS
from calico.flowlogs.endpoints import EndpointIndex

log = logging.getLogger(__name__)

__all__ = ["EXIT_CONFIG_CHANGED", "EXIT_FATAL", "EXIT_OK", "CalcGraphLike", "FelixDaemon", "endpoint_status_id"]

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_CONFIG_CHANGED = 129  # "restart me": a parameter changed that cannot be applied live

FELIXCONFIG_PLURAL = "felixconfigurations"
HEALTH_TIMEOUT = 90.0  # a main loop silent for this long is not live
HEARTBEAT = 10.0  # the main loop reports health at least this often


class CalcGraphLike(Protocol):
    """What the daemon needs from `calico.calculation.graph.CalcGraph`."""

    def on_update(self, key: str, value: bytes | None) -> None: ...

    def on_in_sync(self) -> None: ...

    def flush(self) -> list[DataplaneEvent]: ...


GraphFactory = Callable[[str], CalcGraphLike]


def default_graph_factory(hostname: str) -> CalcGraphLike:
    from calico.calculation.graph import CalcGraph  # imported late: the graph is optional for tests

    graph: CalcGraphLike = CalcGraph(hostname)
    return graph


def endpoint_status_id(namespace: str, name: str, spec: Mapping[str, Any]) -> EndpointStatusID:
    """How Calico's status keys name a workload endpoint: Kubernetes workloads as "namespace/pod"."""
    orchestrator = str(spec.get("orchestrator") or "k8s")
    workload = spec.get("workload") or spec.get("pod") or name
    if orchestrator == "k8s":
        workload = f"{namespace}/{spec.get('pod') or workload}"
    return EndpointStatusID(orchestrator, str(workload), str(spec.get("endpoint") or "eth0"))


_STOP = object()  # queue sentinel: wake the main loop to stop


def _freeze_long_lived() -> None:
    gc.collect()
    gc.freeze()


class FelixDaemon:
    def __init__(
        self,
        config: FelixConfig,
        kv: KVStore,
        driver_factory: DriverFactory,
        *,
        graph_factory: GraphFactory | None = None,
        metrics: FelixMetrics | None = None,
        health: HealthAggregator | None = None,
        log_setup: LogSetup | None = None,
        retry_delay: float = 0.1,
        max_retry_delay: float = 30.0,
        heartbeat: float = HEARTBEAT,
        health_timeout: float = HEALTH_TIMEOUT,
        stop_grace: float = 10.0,
    ) -> None:
        self.local = config  # env + file; re-merged with the datastore layers on every change
        self.config = config
        self.kv = kv
        self.driver_factory = driver_factory
        self.graph_factory = graph_factory or default_graph_factory
        self.metrics = metrics or FelixMetrics(process_metrics=config.prometheus_process_metrics_enabled)
        self.health = health or HealthAggregator()
        self.log_setup = log_setup
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.heartbeat = heartbeat
        self.stop_grace = stop_grace

        self.hostname = config.hostname
        self._hostname_bytes = self.hostname.encode()
        self._cfg_keys = {
            f"{RESOURCE_PREFIX}{FELIXCONFIG_PLURAL}/default": "global",
            f"{RESOURCE_PREFIX}{FELIXCONFIG_PLURAL}/node.{self.hostname}": "node",
        }
        self._ds_layers: dict[str, dict[str, Any] | None] = {"global": None, "node": None}

        self._calc_health = self.health.register("async_calc_graph", timeout=health_timeout)
        self._dp_health = self.health.register("int_dataplane", timeout=health_timeout)

        self.syncer = Syncer(kv, [RESOURCE_PREFIX, IPAM_HOST_PREFIX])  # resources and block affinities
        self.pending = PendingVerdicts(kv)  # staged policies: the flow logs' pending verdicts
        self._queue: asyncio.Queue[SyncerEvent | object] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._exit_code = EXIT_OK

        self.graph: CalcGraphLike | None = None
        self.driver: DataplaneDriver | None = None
        self.reporter: StatusReporter | None = None
        self.counters: PolicyCounters | None = None
        self.counter_publisher: CounterPublisher | None = None
        self.flow_logs: FlowLogCollector | None = None
        self.flow_endpoints: EndpointIndex | None = None
        self.health_server: HttpServer | None = None
        self.metrics_server: HttpServer | None = None

        self.in_sync = False
        self.first_apply_done = False
        self._pending: list[DataplaneEvent] = []
        self._retry_at: float | None = None
        self._backoff = retry_delay
        self._next_refresh: float | None = None
        self.applies = 0  # successful driver.apply calls

        # Cluster-wide counts (metrics) and this host's workload endpoints (status key names).
        self._cluster: dict[str, set[str]] = {"nodes": set(), "workloadendpoints": set(), "hostendpoints": set()}
        self._local_weps: dict[WorkloadEndpointID, EndpointStatusID] = {}
        # What the dataplane has been told is active (metrics).
        self._active_eps: set[object] = set()
        self._active_policies: set[object] = set()
        self._active_profiles: set[str] = set()
        self._active_ipsets: set[str] = set()

    # --- public -----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.in_sync and self.first_apply_done and self._retry_at is None

    def request_stop(self) -> None:
        """Stop soon (signal handlers call this): the batch in flight completes, the dataplane stays."""
        if not self._stopping.is_set():
            log.info("stop requested")
            self._stopping.set()
            self._queue.put_nowait(_STOP)

    async def run(self) -> int:
        """Run until stopped; returns EXIT_OK, EXIT_CONFIG_CHANGED or EXIT_FATAL."""
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not await self._load_initial_config():
                return EXIT_OK
            log.info(
                "Felix starting",
                extra={"hostname": self.hostname, "backend": self.config.dataplane_backend,
                       "overrides": ",".join(sorted(k for k, v in self.config.sources.items() if v != "default"))},
            )
            if self.log_setup is not None:
                self.log_setup.apply(self.config)
            tasks.extend(self._start_servers())
            try:
                self.driver = self.driver_factory(self.config, self.metrics)
                self.graph = self.graph_factory(self.hostname)
            except Exception as e:
                log.error("cannot start: %s", e)
                return EXIT_FATAL
            self.reporter = self._make_reporter()
            tasks.append(asyncio.create_task(self.reporter.run(), name="felix-status"))
            self.counters = PolicyCounters(self.driver.read_counters, self._owner_index)
            self.metrics.rule_counters.attach(self.counters)
            self.metrics.scrape_hooks.append(self._scrape_counters)
            self.counter_publisher = self._make_counter_publisher(self.counters)
            tasks.append(asyncio.create_task(self.counter_publisher.run(), name="felix-counters"))
            self._report_health()
            if not await self._start_driver():
                return EXIT_OK
            if self.config.flow_logs_enabled:
                self.flow_logs = self._make_flow_log_collector()
                tasks.append(asyncio.create_task(self.flow_logs.run(), name="felix-flowlogs"))
            tasks.append(asyncio.create_task(self._pump(), name="felix-syncer"))
            return await self._run_main_loop()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.driver is not None:
                try:
                    await self.driver.stop()
                except Exception:
                    log.exception("dataplane driver failed to stop cleanly")
            log.info("Felix stopped", extra={"exit_code": self._exit_code})

    # --- start-up ---------------------------------------------------------------------------------

    async def _wait_stop(self, delay: float) -> bool:
        """Sleep `delay`; True if a stop was requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        return self._stopping.is_set()

    async def _load_initial_config(self) -> bool:
        """Read the FelixConfiguration resources before anything depends on the config; waits (with
        backoff) for the datastore. False if stopped while waiting."""
        delay = self.retry_delay
        while True:
            try:
                kvs, _ = await self.kv.list(f"{RESOURCE_PREFIX}{FELIXCONFIG_PLURAL}/")
                break
            except KVError as e:
                log.warning("waiting for the datastore to read FelixConfiguration (%s); retrying in %.1fs", e, delay)
                if await self._wait_stop(delay):
                    return False
                delay = min(delay * 2, self.max_retry_delay)
        for kv in kvs:
            self._felixconfig_update(kv.key, kv.value)
        self.config = self._merged()
        return not self._stopping.is_set()

    def _start_servers(self) -> list[asyncio.Task[None]]:
        tasks = []
        cfg = self.config
        if cfg.health_enabled:
            self.health_server = health_server(self.health, cfg.health_host, cfg.health_port)
            tasks.append(asyncio.create_task(self.health_server.run(), name="felix-health"))
        if cfg.prometheus_metrics_enabled:
            self.metrics_server = metrics_server(self.metrics, cfg.prometheus_metrics_host, cfg.prometheus_metrics_port)
            tasks.append(asyncio.create_task(self.metrics_server.run(), name="felix-metrics"))
        return tasks

    def _make_reporter(self) -> StatusReporter:
        cfg = self.config
        return StatusReporter(
            self.kv,
            self.hostname,
            region=cfg.status_region,
            interval=cfg.reporting_interval_secs,
            ttl=cfg.reporting_ttl_secs,
            endpoint_reporting=cfg.endpoint_reporting_enabled,
            endpoint_delay=cfg.endpoint_reporting_delay_secs,
            endpoint_source=self._endpoint_statuses,
        )

    def _make_counter_publisher(self, counters: PolicyCounters) -> CounterPublisher:
        cfg = self.config
        return CounterPublisher(self.kv, self.hostname, counters, region=cfg.status_region,
                                interval=cfg.counters_reporting_interval_secs, ttl=cfg.reporting_ttl_secs)

    def _make_flow_log_collector(self) -> FlowLogCollector:
        cfg = self.config
        settings = FlowLogSettings(
            group=cfg.flow_logs_nflog_group, flush_interval=cfg.flow_logs_flush_interval,
            file_directory=cfg.flow_logs_file_directory if cfg.flow_logs_file_enabled else None,
            max_file_bytes=cfg.flow_logs_file_max_file_size_mb << 20, max_files=cfg.flow_logs_file_max_files,
            socket_path=cfg.flow_logs_socket_path or None, max_flows=cfg.flow_logs_max_flows,
            max_events_per_second=cfg.flow_logs_max_events_per_second,
            conntrack_interval=min(10.0, cfg.flow_logs_flush_interval))
        self.flow_endpoints = self.flow_endpoints or EndpointIndex()
        collector = FlowLogCollector(settings, self.hostname, self.flow_endpoints.lookup, self._owner_index,
                                     pending=self.pending.annotate)
        self.metrics.flow_logs.attach(collector)
        return collector

    async def _scrape_counters(self) -> None:
        if self.counters is not None:
            await self.counters.refresh(max_age=SCRAPE_MAX_AGE)

    def _owner_index(self) -> OwnerIndex:
        """Names for hashed rule identities: the policies and profiles the dataplane was given."""
        return OwnerIndex([p for p in self._active_policies if isinstance(p, PolicyID)], self._active_profiles)

    async def _start_driver(self) -> bool:
        assert self.driver is not None
        delay = self.retry_delay
        while True:
            try:
                await self.driver.start()
                return True
            except Exception as e:
                self.metrics.int_dataplane_failures.inc()
                log.error("dataplane driver failed to start (%s); retrying in %.1fs", e, delay, exc_info=True)
                if await self._wait_stop(delay):
                    return False
                delay = min(delay * 2, self.max_retry_delay)

    async def _pump(self) -> None:
        """Syncer -> queue. The syncer handles datastore faults itself; anything else restarts it (the same
        object, so its resync still delivers exactly the difference)."""
        while True:
            try:
                async for ev in self.syncer.updates():
                    self._queue.put_nowait(ev)
            except Exception:
                log.exception("syncer failed; restarting it")
                await asyncio.sleep(self.retry_delay)

    # --- main loop --------------------------------------------------------------------------------

    async def _run_main_loop(self) -> int:
        main = asyncio.create_task(self._main_loop(), name="felix-main")
        stop = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not main.done():
                # Let a batch in flight finish; a driver stuck past the grace period is abandoned.
                done, _ = await asyncio.wait({main}, timeout=self.stop_grace)
                if not done:
                    log.warning("dataplane still busy after %.0fs; stopping anyway", self.stop_grace)
                    main.cancel()
                    await asyncio.gather(main, return_exceptions=True)
                    return self._exit_code
            exc = main.exception()
            if exc is not None:
                log.critical("main loop failed", exc_info=exc)
                self._exit_code = EXIT_FATAL
            return self._exit_code
        finally:
            stop.cancel()
            if not main.done():
                main.cancel()
            await asyncio.gather(main, stop, return_exceptions=True)

    async def _main_loop(self) -> None:
        while True:
            try:
                first = await asyncio.wait_for(self._queue.get(), self._next_timeout())
                items = [first]
            except TimeoutError:
                items = []
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            if _STOP in items or self._stopping.is_set():
                return
            self._process(items)
            if self._exit_code == EXIT_CONFIG_CHANGED:
                self.request_stop()
                return
            await self._maybe_apply()
            await self._maybe_refresh()
            self._report_health()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        deadline = now + self.heartbeat
        if self._retry_at is not None:
            deadline = min(deadline, self._retry_at)
        elif self._next_refresh is not None and self.config.iptables_refresh_interval > 0:
            deadline = min(deadline, self._next_refresh)
        return max(0.0, deadline - now)

    def _report_health(self) -> None:
        self._calc_health.report(live=True, ready=self.in_sync)
        self._dp_health.report(live=True, ready=self.first_apply_done and self._retry_at is None)

    def _process(self, items: Sequence[SyncerEvent | object]) -> None:
        """Feed one drained batch of syncer output to the graph (and watch config and counts on the way)."""
        started = time.perf_counter()
        updates = 0
        config_changed = False
        by_type: dict[str, int] = {}  # counted here, added to the metric once per batch (start of day: 10k+)
        for item in items:
            if isinstance(item, StatusUpdate):
                self._on_status(item.status)
            elif isinstance(item, list):
                for up in item:
                    config_changed |= self._on_update(up, by_type)
                    updates += 1
        for plural, count in by_type.items():
            self.metrics.calc_graph_updates_processed.inc(count, type=plural)
        if updates:
            self.metrics.calc_graph_update_time.observe(time.perf_counter() - started)
            self._update_cluster_gauges()
        if config_changed:
            self._on_config_changed()

    def _on_status(self, status: SyncStatus) -> None:
        self.metrics.resync_state.set(RESYNC_STATE[status.value])
        if status is SyncStatus.RESYNC:
            self.metrics.resyncs_started.inc()
        log.info("datastore status: %s", status.value)
        if status is SyncStatus.IN_SYNC and not self.in_sync:
            self.in_sync = True
            assert self.graph is not None
            self.graph.on_in_sync()

    def _on_update(self, up: Update, by_type: dict[str, int]) -> bool:
        """One datastore change (counted into `by_type`); True if it changed this host's FelixConfiguration layers."""
        key = parse_key(up.key)
        plural = key.plural if key is not None else "other"
        by_type[plural] = by_type.get(plural, 0) + 1
        if plural in self._cluster:
            if up.value is None:
                self._cluster[plural].discard(up.key)
            else:
                self._cluster[plural].add(up.key)
        if key is not None and plural == "workloadendpoints" and key.namespace is not None:
            self._track_wep(WorkloadEndpointID(key.namespace, key.name), up.value)
        if self.flow_endpoints is not None and plural in FLOW_ENDPOINT_PLURALS:
            self.flow_endpoints.update(up.key, up.value)
        config_changed = plural == FELIXCONFIG_PLURAL and self._felixconfig_update(up.key, up.value)
        self.pending.on_update(up.key, up.value)
        assert self.graph is not None
        try:
            self.graph.on_update(up.key, up.value)
        except Exception:
            # A graph bug on one value must not stop the agent from programming everything else.
            log.exception("calculation graph failed on %s; update skipped", up.key)
        return config_changed

    def _track_wep(self, wid: WorkloadEndpointID, value: bytes | None) -> None:
        spec: Any = None
        # Most endpoints are remote: when the value cannot name this host, skip a second full JSON parse. UTF-8
        # JSON without escapes (no backslash) and not UTF-16/32 (no NUL) holds spec.node's text verbatim.
        if value is not None and self._hostname_bytes not in value and b"\\" not in value and b"\0" not in value:
            value = None
        if value is not None:
            try:
                spec = json.loads(value).get("spec")
            except (ValueError, AttributeError):
                spec = None
        if isinstance(spec, dict) and spec.get("node") == self.hostname:
            self._local_weps[wid] = endpoint_status_id(wid.namespace, wid.name, spec)
        else:
            self._local_weps.pop(wid, None)

    def _update_cluster_gauges(self) -> None:
        self.metrics.cluster_num_hosts.set(len(self._cluster["nodes"]))
        self.metrics.cluster_num_workload_endpoints.set(len(self._cluster["workloadendpoints"]))
        self.metrics.cluster_num_host_endpoints.set(len(self._cluster["hostendpoints"]))

    # --- configuration ----------------------------------------------------------------------------

    def _felixconfig_update(self, key: str, value: bytes | None) -> bool:
        layer = self._cfg_keys.get(key)
        if layer is None:
            return False
        if value is None:
            parsed: dict[str, Any] | None = None
        else:
            parsed = parse_datastore_value(value, f"FelixConfiguration {key.rsplit('/', 1)[1]}")
            if parsed is None:
                return False  # unusable value: keep what we had
        if parsed == self._ds_layers[layer]:
            return False
        self._ds_layers[layer] = parsed
        return True

    def _merged(self) -> FelixConfig:
        return self.local.with_datastore(self._ds_layers["global"], self._ds_layers["node"])

    def _on_config_changed(self) -> None:
        new = self._merged()
        changes = diff(self.config, new)
        if not changes:
            return
        needs = restart_needed(changes)
        if needs:
            log.warning("configuration changed in a way that needs a restart; exiting",
                        extra={"params": ",".join(needs), "exit_code": EXIT_CONFIG_CHANGED})
            self._exit_code = EXIT_CONFIG_CHANGED
            return
        log.info("configuration changed; applying live", extra={"params": ",".join(sorted(changes))})
        self.config = new
        if self.log_setup is not None:
            self.log_setup.apply(new)
        if self.reporter is not None:
            self.reporter.reconfigure(
                interval=new.reporting_interval_secs,
                ttl=new.reporting_ttl_secs,
                endpoint_reporting=new.endpoint_reporting_enabled,
                endpoint_delay=new.endpoint_reporting_delay_secs,
            )
        if self.counter_publisher is not None:
            self.counter_publisher.reconfigure(interval=new.counters_reporting_interval_secs,
                                               ttl=new.reporting_ttl_secs)
        if self._next_refresh is not None:
            self._next_refresh = time.monotonic() + new.iptables_refresh_interval

    # --- dataplane --------------------------------------------------------------------------------

    def _flush_graph(self) -> None:
        assert self.graph is not None
        try:
            events = self.graph.flush()
        except Exception:
            log.exception("calculation graph failed to flush; will try again with the next batch")
            return
        self.metrics.calc_graph_output_events.inc(len(events))
        # The driver's configuration is fixed when it is built (a change that concerns it restarts Felix).
        self._pending.extend(ev for ev in events if not isinstance(ev, ConfigUpdate))

    async def _maybe_apply(self) -> None:
        if not self.in_sync:
            return  # hold everything until the whole snapshot is in: one start-of-day batch
        self._flush_graph()
        if not self._pending:
            return
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return
        await self._apply()

    async def _apply(self) -> None:
        assert self.driver is not None
        batch = list(self._pending)
        started = time.perf_counter()
        try:
            await self.driver.apply(batch)
        except Exception as e:
            self.metrics.int_dataplane_failures.inc()
            self._retry_at = time.monotonic() + self._backoff
            log.error("dataplane apply failed (%s); retrying in %.1fs", e, self._backoff,
                      extra={"events": len(batch)}, exc_info=True)
            self._backoff = min(self._backoff * 2, self.max_retry_delay)
            return
        elapsed = time.perf_counter() - started
        self.metrics.int_dataplane_apply_time.observe(elapsed)
        self.metrics.int_dataplane_msg_batch_size.observe(len(batch))
        del self._pending[: len(batch)]
        self._retry_at = None
        self._backoff = self.retry_delay
        self.applies += 1
        if not self.first_apply_done:
            self.first_apply_done = True
            log.info("first dataplane apply done; ready", extra={"events": len(batch), "seconds": round(elapsed, 3)})
            # The snapshot's objects (cluster-wide endpoints, indexes) live as long as the agent: move them out
            # of the cyclic GC's sight, or every full collection walks them all (40-60 ms pauses at 10k remote
            # endpoints, landing on whichever endpoint update is being programmed). A moment later, so the
            # collection (~20 ms) does not delay the readiness report.
            asyncio.get_running_loop().call_later(1.0, _freeze_long_lived)
            self._next_refresh = time.monotonic() + self.config.iptables_refresh_interval
        else:
            log.debug("dataplane batch applied", extra={"events": len(batch), "seconds": round(elapsed, 3)})
        self._note_applied(batch)
        if self.reporter is not None:
            self.reporter.poke()

    def _note_applied(self, batch: Sequence[DataplaneEvent]) -> None:
        for ev in batch:
            self.metrics.int_dataplane_messages.inc(type=type(ev).__name__)
            if isinstance(ev, WorkloadEndpointUpdate):
                self._active_eps.add(ev.endpoint_id)
            elif isinstance(ev, WorkloadEndpointRemove):
                self._active_eps.discard(ev.endpoint_id)
            elif isinstance(ev, HostEndpointUpdate):
                self._active_eps.add(("host", ev.name))
            elif isinstance(ev, HostEndpointRemove):
                self._active_eps.discard(("host", ev.name))
            elif isinstance(ev, PolicyUpdate):
                self._active_policies.add(ev.policy_id)
            elif isinstance(ev, PolicyRemove):
                self._active_policies.discard(ev.policy_id)
            elif isinstance(ev, ProfileUpdate):
                self._active_profiles.add(ev.profile_id)
            elif isinstance(ev, ProfileRemove):
                self._active_profiles.discard(ev.profile_id)
            elif isinstance(ev, IPSetUpdate):
                self._active_ipsets.add(ev.set_id)
            elif isinstance(ev, IPSetRemove):
                self._active_ipsets.discard(ev.set_id)
        self.metrics.active_local_endpoints.set(len(self._active_eps))
        self.metrics.active_local_policies.set(len(self._active_policies))
        # Every active selector is one IP set in our graph (named-port sets included).
        self.metrics.active_local_selectors.set(len(self._active_ipsets))
        self.metrics.ipsets_calico.set(len(self._active_ipsets))

    async def _maybe_refresh(self) -> None:
        interval = self.config.iptables_refresh_interval
        if (
            self.driver is None
            or self._next_refresh is None
            or interval <= 0
            or self._retry_at is not None
            or time.monotonic() < self._next_refresh
        ):
            return
        try:
            await self.driver.refresh()
        except Exception as e:
            self.metrics.int_dataplane_failures.inc()
            log.error("dataplane refresh failed (%s); next try in %.0fs", e, interval, exc_info=True)
        if self.counters is not None:
            await self.counters.refresh()  # never raises: a failed read keeps the last values
        self._next_refresh = time.monotonic() + interval

    def _endpoint_statuses(self) -> Mapping[EndpointStatusID, str] | None:
        """For the status reporter: None until the dataplane has applied the in-sync state."""
        if self.driver is None or not self.first_apply_done:
            return None
        out: dict[EndpointStatusID, str] = {}
        for wid, status in self.driver.endpoint_status().items():
            sid = self._local_weps.get(wid)
            if sid is not None:
                out[sid] = status
        return out

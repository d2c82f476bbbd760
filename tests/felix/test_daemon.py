"""The Felix daemon against the real embedded store: batching, readiness, retries, bad values, config
changes, status reporting, refresh, clean stop. The dataplane is a RecordingDriver (no kernel access)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from calico.calculation.events import ConfigUpdate, InSync, WorkloadEndpointUpdate
from calico.datastore.embedded import EmbeddedKV
from calico.datastore.keys import RESOURCE_PREFIX
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.felix.config import FelixConfig
from calico.felix.daemon import EXIT_CONFIG_CHANGED, EXIT_OK, FelixDaemon
from calico.felix.driver import RecordingDriver
from calico.felix.metrics import FelixMetrics
from tests.felix.util import StandInGraph, felixconfig_json, profile, wait_until, wep
from tests.helpers.flaky_kv import FlakyKV
from tests.unit.felix.http_client import fetch

try:
    from calico.calculation.graph import CalcGraph

    GRAPHS: list[Callable[[str], Any]] = [CalcGraph, StandInGraph]
except ImportError:  # the real graph is optional for this shell's tests
    GRAPHS = [StandInGraph]

BASE_ENV = {
    "FELIX_FELIXHOSTNAME": "node1",
    "FELIX_HEALTHENABLED": "true",
    "FELIX_HEALTHHOST": "127.0.0.1",
    "FELIX_HEALTHPORT": "0",
    "FELIX_PROMETHEUSMETRICSENABLED": "true",
    "FELIX_PROMETHEUSMETRICSHOST": "127.0.0.1",
    "FELIX_PROMETHEUSMETRICSPORT": "0",
    "FELIX_REPORTINGINTERVALSECS": "0.2",
    "FELIX_REPORTINGTTLSECS": "1",
}
FELIXCONFIG = f"{RESOURCE_PREFIX}felixconfigurations/"


def graph_id(g: Callable[[str], Any]) -> str:
    return "standin" if g is StandInGraph else "real"


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[KVStore]:
    store = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        yield store
    finally:
        await store.close()


class Running:
    def __init__(self, daemon: FelixDaemon, driver: RecordingDriver) -> None:
        self.daemon = daemon
        self.driver = driver
        self.built_with: FelixConfig | None = None  # the config the driver factory was given
        self.task = asyncio.create_task(daemon.run())

    async def ready(self) -> None:
        await wait_until(lambda: self.daemon.ready or self.task.done(), what="daemon ready")
        assert not self.task.done(), self.task.result()

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 10)

    def metric(self, name: str, **labels: str) -> float | None:
        return self.daemon.metrics.registry.get_sample_value(name, labels)


def start(kv: KVStore, env: dict[str, str] | None = None, driver: RecordingDriver | None = None,
          graph: Callable[[str], Any] = StandInGraph) -> Running:
    cfg = FelixConfig.load({**BASE_ENV, **(env or {})}, None)
    drv = driver or RecordingDriver()

    def factory(config: FelixConfig, metrics: FelixMetrics) -> RecordingDriver:
        started.built_with = config
        return drv

    daemon = FelixDaemon(cfg, kv, factory, graph_factory=graph, retry_delay=0.05, max_retry_delay=0.2, heartbeat=0.1)
    started = Running(daemon, drv)
    return started


@pytest.fixture
async def running() -> AsyncIterator[list[Running]]:
    """Daemons a test started; stopped at the end even when the test fails."""
    started: list[Running] = []
    yield started
    for r in started:
        if not r.task.done():
            r.daemon.request_stop()
        await asyncio.gather(r.task, return_exceptions=True)


@pytest.mark.parametrize("graph", GRAPHS, ids=graph_id)
async def test_start_of_day_is_one_batch_then_one_batch_per_change(
    kv: KVStore, running: list[Running], graph: Callable[[str], Any]
) -> None:
    store = ResourceStore(kv)
    await store.create(profile())
    await store.create(wep("pod1"))
    await store.create(wep("pod2", node="node2", ip="198.18.0.6"))
    await kv.put(FELIXCONFIG + "default", felixconfig_json("default", metadataPort=9999))
    r = start(kv, graph=graph)
    running.append(r)
    await r.ready()

    assert r.driver.started == 1
    assert len(r.driver.batches) == 1
    [batch] = r.driver.batches
    assert isinstance(batch[-1], InSync)
    assert not any(isinstance(e, ConfigUpdate) for e in batch)  # configuration reaches a driver once, when built
    assert r.built_with is not None and r.built_with.metadata_port == 9999  # the merged config built the driver
    weps = [e for e in batch if isinstance(e, WorkloadEndpointUpdate)]
    assert [e.endpoint_id.name for e in weps] == ["node1-k8s-pod1-eth0"]  # node2's endpoint is not ours

    assert r.daemon.health_server is not None and r.daemon.metrics_server is not None
    await r.daemon.health_server.serving.wait()
    await r.daemon.metrics_server.serving.wait()
    assert (await fetch(r.daemon.health_server.port, "/readiness"))[0] == 200
    assert (await fetch(r.daemon.health_server.port, "/liveness"))[0] == 200
    body = (await fetch(r.daemon.metrics_server.port, "/metrics"))[2].decode()
    assert "felix_cluster_num_workload_endpoints 2.0" in body
    assert "felix_active_local_endpoints 1.0" in body
    assert "felix_resync_state 3.0" in body

    await store.create(wep("pod3", ip="198.18.0.7"))
    await wait_until(lambda: len(r.driver.batches) == 2, what="second batch")
    second = r.driver.batches[1]
    assert not any(isinstance(e, ConfigUpdate | InSync) for e in second)
    assert [e.endpoint_id.name for e in second if isinstance(e, WorkloadEndpointUpdate)] == ["node1-k8s-pod3-eth0"]
    assert await r.stop() == EXIT_OK
    assert r.driver.stopped == 1


async def test_failed_apply_is_retried_and_gates_readiness(kv: KVStore, running: list[Running]) -> None:
    await ResourceStore(kv).create(wep("pod1"))
    r = start(kv, driver=RecordingDriver(fail_applies=1000))
    running.append(r)
    await wait_until(lambda: len(r.driver.attempts) >= 3, what="retries")
    assert not r.daemon.ready and r.driver.batches == []
    assert r.daemon.health_server is not None
    await r.daemon.health_server.serving.wait()
    assert (await fetch(r.daemon.health_server.port, "/readiness"))[0] == 503
    assert (await fetch(r.daemon.health_server.port, "/liveness"))[0] == 200  # failing is not dead
    r.driver.fail_applies = 0
    await r.ready()
    assert r.driver.attempts[0] == r.driver.attempts[1] == r.driver.batches[0]  # the same batch, again
    assert r.daemon.metrics.int_dataplane_failures.value() == len(r.driver.attempts) - 1
    assert await r.stop() == EXIT_OK


async def test_bad_datastore_values_never_crash(kv: KVStore, running: list[Running]) -> None:
    store = ResourceStore(kv)
    await kv.put(f"{RESOURCE_PREFIX}workloadendpoints/default/garbage", b"\x00not json")
    await kv.put(FELIXCONFIG + "default", b"{broken")
    await kv.put(FELIXCONFIG + "node.node1", felixconfig_json("node.node1", healthPort="nine", metadataPort=1234))
    r = start(kv, graph=GRAPHS[0])
    running.append(r)
    await r.ready()
    cfg = r.daemon.config
    assert cfg.metadata_port == 1234  # the good field of the node config is used, the bad one ignored
    await kv.put(f"{RESOURCE_PREFIX}networkpolicies/default/p", b"[1, 2]")
    await kv.put(FELIXCONFIG + "default", b"\xff\xfe")
    await store.create(wep("pod9", ip="198.18.0.9"))
    await wait_until(lambda: any(isinstance(e, WorkloadEndpointUpdate) and "pod9" in e.endpoint_id.name
                                 for e in r.driver.events), what="good update after bad ones")
    assert not r.task.done() and r.daemon.config == cfg
    assert await r.stop() == EXIT_OK


async def test_graph_exception_is_logged_and_skipped(kv: KVStore, running: list[Running]) -> None:
    store = ResourceStore(kv)
    await store.create(wep("boom"))
    await store.create(wep("fine", ip="198.18.0.8"))
    r = start(kv, graph=lambda host: StandInGraph(host, explode_on="boom"))
    running.append(r)
    await r.ready()
    assert [e.endpoint_id.name for e in r.driver.events if isinstance(e, WorkloadEndpointUpdate)] == [
        "node1-k8s-fine-eth0"]
    assert await r.stop() == EXIT_OK


async def test_felixconfiguration_live_change_then_restart(kv: KVStore, running: list[Running]) -> None:
    r = start(kv)
    running.append(r)
    await r.ready()
    assert r.daemon.config.log_severity_screen == "Info"
    await kv.put(FELIXCONFIG + "default",
                 felixconfig_json("default", logSeverityScreen="Debug", endpointReportingDelay="2s",
                                  iptablesRefreshInterval="5s"))
    await wait_until(lambda: r.daemon.config.log_severity_screen == "Debug", what="live change")
    assert r.daemon.reporter is not None and r.daemon.reporter.endpoint_delay == 2.0
    assert r.daemon.config.iptables_refresh_interval == 5.0
    assert not any(isinstance(e, ConfigUpdate) for e in r.driver.events)  # nothing of this concerns the driver
    assert not r.task.done()
    # A per-node setting that cannot change under a running dataplane: stop and ask to be restarted.
    await kv.put(FELIXCONFIG + "node.node1", felixconfig_json("node.node1", interfacePrefix="tap"))
    assert await asyncio.wait_for(r.task, 5) == EXIT_CONFIG_CHANGED
    assert r.driver.stopped == 1
    # Another node's config is none of our business.
    r2 = start(kv, env={"FELIX_INTERFACEPREFIX": "tap"})
    running.append(r2)
    await r2.ready()
    await kv.put(FELIXCONFIG + "node.node2", felixconfig_json("node.node2", interfacePrefix="eth"))
    await asyncio.sleep(0.2)
    assert not r2.task.done()
    assert await r2.stop() == EXIT_OK


async def test_periodic_refresh_and_refresh_failure(kv: KVStore, running: list[Running]) -> None:
    r = start(kv, env={"FELIX_IPTABLESREFRESHINTERVAL": "0.1"}, driver=RecordingDriver(fail_refreshes=1))
    running.append(r)
    await r.ready()
    await wait_until(lambda: r.driver.refreshes >= 3, what="refreshes")
    assert r.daemon.metrics.int_dataplane_failures.value() == 1
    assert await r.stop() == EXIT_OK


async def test_status_and_endpoint_status_keys(kv: KVStore, running: list[Running]) -> None:
    store = ResourceStore(kv)
    await store.create(wep("pod1"))
    r = start(kv, env={"FELIX_ENDPOINTREPORTINGENABLED": "true", "FELIX_ENDPOINTREPORTINGDELAYSECS": "0.05"})
    running.append(r)
    await r.ready()
    host = "/calico/felix/v2/no-region/host/node1/"
    ep_key = host + "workload/k8s/default%2fpod1/endpoint/eth0"

    async def value(key: str) -> Any:
        kv_ = await kv.get(key)
        return None if kv_ is None else json.loads(kv_.value)

    async def ep_up() -> bool:
        return await value(ep_key) == {"status": "up"}

    await wait_until(ep_up, what="endpoint status")
    assert (await value(host + "status"))["time"].endswith("Z")
    await store.delete("WorkloadEndpoint", "node1-k8s-pod1-eth0", "default")

    async def ep_gone() -> bool:
        return await value(ep_key) is None

    await wait_until(ep_gone, what="endpoint status deleted")
    assert await r.stop() == EXIT_OK

    async def status_gone() -> bool:
        return await value(host + "status") is None

    await wait_until(status_gone, timeout=4, what="status lease expiry")  # TTL 1 s, no more refreshes
    assert await value(host + "last_reported_status") is not None


async def test_waits_for_the_datastore(kv: KVStore, running: list[Running]) -> None:
    flaky = FlakyKV(kv)
    flaky.down = True
    r = start(flaky)
    running.append(r)
    await asyncio.sleep(0.3)
    assert not r.daemon.ready and not r.task.done() and r.driver.started == 0
    flaky.down = False
    await r.ready()
    assert await r.stop() == EXIT_OK


async def test_resync_after_watch_break_is_counted(kv: KVStore, running: list[Running]) -> None:
    flaky = FlakyKV(kv)
    r = start(flaky)
    running.append(r)
    await r.ready()
    flaky.break_watches()
    await ResourceStore(kv).create(wep("late"))
    await wait_until(lambda: any(isinstance(e, WorkloadEndpointUpdate) for e in r.driver.events), what="late wep")
    await wait_until(lambda: r.daemon.metrics.resyncs_started.value() >= 2, what="resync counted")
    assert sum(isinstance(e, InSync) for e in r.driver.events) == 1
    assert await r.stop() == EXIT_OK


def test_default_metrics_object_is_private() -> None:
    a, b = FelixMetrics(), FelixMetrics()
    assert a.registry is not b.registry

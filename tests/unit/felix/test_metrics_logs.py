"""Metrics exposition (Calico's names, own registry, served over HTTP) and key=value logging."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY

from calico.felix.logs import KeyValueFormatter, level_of
from calico.felix.metrics import FelixMetrics, metrics_server
from tests.unit.felix.http_client import fetch


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exposed")


def test_exposition_uses_calico_names() -> None:
    m = FelixMetrics()
    m.iptables_restore_calls.inc()
    m.iptables_restore_calls.inc(2)
    m.nft_errors.inc()
    m.int_dataplane_messages.inc(type="WorkloadEndpointUpdate")
    m.active_local_endpoints.set(3)
    m.calc_graph_update_time.observe(0.25)
    m.exec_time_micros.observe(2500)
    text = m.exposition().decode()
    assert _sample(text, "felix_iptables_restore_calls") == 3
    assert "felix_iptables_restore_calls_total" not in text
    assert _sample(text, "felix_nft_errors") == 1
    assert _sample(text, "felix_ipset_calls") == 0
    assert 'felix_int_dataplane_messages{type="WorkloadEndpointUpdate"} 1.0' in text
    assert _sample(text, "felix_active_local_endpoints") == 3
    assert _sample(text, "felix_calc_graph_update_time_seconds_count") == 1
    assert _sample(text, "felix_calc_graph_update_time_seconds_sum") == 0.25
    assert _sample(text, "felix_exec_time_micros_sum") == 2500
    for name in ("felix_active_local_policies", "felix_active_local_selectors", "felix_ipsets_calico",
                 "felix_int_dataplane_apply_time_seconds_count", "felix_int_dataplane_failures",
                 "felix_iptables_restore_errors", "felix_ipset_errors", "felix_nft_calls", "felix_resyncs_started",
                 "felix_cluster_num_workload_endpoints", "felix_resync_state"):
        _sample(text, name)
    # Our registry only: nothing leaks into the process-global one, and two instances do not clash.
    assert REGISTRY.get_sample_value("felix_active_local_endpoints") is None
    FelixMetrics(process_metrics=True)


async def test_metrics_over_http() -> None:
    m = FelixMetrics()
    m.ipsets_calico.set(7)
    srv = metrics_server(m, "127.0.0.1", 0)
    await srv.start()
    try:
        status, headers, body = await fetch(srv.port, "/metrics")
    finally:
        await srv.close()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert _sample(body.decode(), "felix_ipsets_calico") == 7


def test_key_value_log_lines() -> None:
    rec = logging.LogRecord("calico.felix.daemon", logging.WARNING, __file__, 1, "apply failed: %s", ("boom",), None)
    rec.events = 12
    rec.params = "A,B"
    rec.note = 'has "quotes" and spaces'
    line = KeyValueFormatter().format(rec)
    assert line.startswith("time=") and line.split()[0].endswith("Z")
    assert ' level=warning logger=calico.felix.daemon msg="apply failed: boom" events=12 params=A,B ' in line
    assert line.endswith('note="has \\"quotes\\" and spaces"')
    assert level_of("Debug") == logging.DEBUG and level_of("Fatal") == logging.CRITICAL


def test_tool_calls_map_to_calico_counters() -> None:
    m = FelixMetrics()
    m.observe_tool("iptables-nft-restore", 0.002, True)
    m.observe_tool("ip6tables-legacy-restore", 0.002, False)
    m.observe_tool("iptables-save", 0.001, True)
    m.observe_tool("ipset", 0.001, False)
    m.observe_tool("nft", 0.003, True)
    m.observe_tool("sysctl", 0.001, True)  # exec time only
    assert m.iptables_restore_calls.value() == 2 and m.iptables_restore_errors.value() == 1
    assert m.iptables_save_calls.value() == 1 and m.iptables_save_errors.value() == 0
    assert m.ipset_calls.value() == 1 and m.ipset_errors.value() == 1
    assert m.nft_calls.value() == 1 and m.nft_errors.value() == 0
    assert m.registry.get_sample_value("felix_exec_time_micros_count") == 6

"""Felix's Prometheus metrics, with Calico's `felix_*` names, in a registry of their own.

Enters: observations from the daemon (calc graph timings, datastore state, active local objects) and from
the dataplane driver (process calls, errors, exec times), through the attributes of `FelixMetrics`; the
verdict rules' counters (`calico.felix.counters.PolicyCounters`, attached with `rule_counters.attach`), read
again by a scrape hook before each scrape (at most once per SCRAPE_MAX_AGE).
Leaves: the Prometheus text exposition (`generate_latest` of this registry, never the global one), served
at `/metrics` on PrometheusMetricsHost:PrometheusMetricsPort by `metrics_server()`.

Rule counters (ours; Prometheus counters with `_total`; labels bounded by the policies on the host, never an
address):
    felix_policy_rule_packets_total / _bytes_total   {tier, policy, direction, rule, action}
    felix_profile_rule_packets_total / _bytes_total  {profile, direction, rule, action}
    felix_dropped_packets_total / _bytes_total       {reason, tier, direction}  reason: tier_default (tier set),
        profile_fallthrough, fail_closed (unknown interface), anti_spoofing, conntrack_invalid, endpoint_to_host,
        not_programmed, bad_rule
    felix_accepted_packets_total / _bytes_total      {reason, direction}  reason: failsafe, endpoint_to_host
    felix_rule_counter_read_errors                   failed kernel reads

Flow logs (ours; `calico.flowlogs.collector.FlowLogStats`, attached with `flow_logs.attach`):
    felix_flowlogs_events_total, felix_flowlogs_records_total, felix_flowlogs_flushes_total,
    felix_flowlogs_dropped_total {reason: max_flows | unreadable | socket_client},
    felix_flowlogs_kernel_overflows_total, felix_flowlogs_read_pauses_total, felix_flowlogs_conntrack_errors_total

Counters keep Calico's exact names (`felix_iptables_restore_calls`, not `..._total`): prometheus_client
always appends `_total` to its counter type, so these are exposed as `untyped` samples that only ever
grow (rate() works on them as on any counter). Gauges and summaries are prometheus_client's own; summaries
expose `_count` and `_sum` (no quantiles).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Summary, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from calico.dataplane import ruleids as rid
from calico.felix.httpserver import HttpServer, Response

if TYPE_CHECKING:
    from calico.felix.counters import PolicyCounters
    from calico.flowlogs.collector import FlowLogCollector

log = logging.getLogger(__name__)

__all__ = ["CalicoCounter", "FelixMetrics", "FlowLogMetrics", "RuleCounters", "metrics_server"]

# felix_resync_state values, as Calico numbers them.
RESYNC_STATE = {"wait-for-datastore": 1, "resync": 2, "in-sync": 3}


class CalicoCounter(Collector):
    """A monotonically increasing count exposed under its exact name (see the module docstring)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {} if self.labelnames else {(): 0.0}
        if registry is not None:
            registry.register(self)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, "unknown")

    def collect(self) -> Iterator[Metric]:
        m = Metric(self.name, self.documentation, "unknown")
        for key, val in sorted(self._values.items()):
            m.add_sample(self.name, dict(zip(self.labelnames, key, strict=True)), val)
        yield m


class RuleCounters(Collector):
    """The verdict rules' counters, from the attached `PolicyCounters`' last snapshot, summed per label set."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.counters: PolicyCounters | None = None
        if registry is not None:
            registry.register(self)

    def attach(self, counters: PolicyCounters | None) -> None:
        self.counters = counters

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        snapshot = self.counters.snapshot if self.counters is not None else {}
        # families: packets, bytes of policy rules (0, 1), profile rules (2, 3), drops (4, 5), accepts (6, 7)
        sums: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for r, (packets, nbytes) in snapshot.items():
            direction, action = rid.DIRECTION_NAMES[r.direction], rid.ACTION_NAMES[r.action]
            if r.kind is rid.Kind.POLICY:
                at, labels = 0, (r.tier, r.policy, direction, str(r.index), action)
            elif r.kind is rid.Kind.PROFILE:
                at, labels = 2, (r.name, direction, str(r.index), action)
            elif r.action is rid.Action.DENY:
                at, labels = 4, (rid.REASON_NAMES[r.kind], r.tier, direction)
            else:
                at, labels = 6, (rid.REASON_NAMES[r.kind], direction)
            acc = sums.setdefault((at, labels), [0, 0])
            acc[0] += packets
            acc[1] += nbytes
        for (at, labels), (packets, nbytes) in sorted(sums.items()):
            families[at].add_metric(list(labels), packets)
            families[at + 1].add_metric(list(labels), nbytes)
        families[8].add_metric([], self.counters.errors if self.counters is not None else 0)
        return iter(families)

    @staticmethod
    def _families() -> list[CounterMetricFamily]:
        rule = ["direction", "rule", "action"]
        out = []
        for name, what, labels in (
            ("felix_policy_rule", "a policy's rule matched on this host", ["tier", "policy", *rule]),
            ("felix_profile_rule", "a profile's rule matched on this host", ["profile", *rule]),
            ("felix_dropped", "Felix's own drops (not a policy's Deny), by reason", ["reason", "tier", "direction"]),
            ("felix_accepted", "Felix's own accepts (failsafe ports, endpoint-to-host), by reason",
             ["reason", "direction"]),
        ):
            out.append(CounterMetricFamily(f"{name}_packets", f"Packets {what}.", labels=labels))
            out.append(CounterMetricFamily(f"{name}_bytes", f"Bytes {what}.", labels=labels))
        out.append(CounterMetricFamily("felix_rule_counter_read_errors",
                                       "Failed reads of the verdict rules' kernel counters.", labels=[]))
        return out


class FlowLogMetrics(Collector):
    """The flow log collector's counts (nothing while flow logs are off)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.collector: FlowLogCollector | None = None
        if registry is not None:
            registry.register(self)

    def attach(self, collector: FlowLogCollector | None) -> None:
        self.collector = collector

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        if self.collector is None:
            return iter(())
        s = self.collector.stats
        out = []
        for name, doc, value in (
            ("events", "Logged packets the flow log collector processed.", s.events),
            ("records", "Flow log records written.", s.records),
            ("flushes", "Flow log intervals ended.", s.flushes),
            ("kernel_overflows", "Times the kernel dropped logged packets the collector had no room for.",
             s.kernel_overflows),
            ("read_pauses", "Times the collector stopped reading for the rest of a second (its per-second budget).",
             s.read_pauses),
            ("conntrack_errors", "Failed conntrack reads.", s.conntrack_errors),
        ):
            family = CounterMetricFamily(f"felix_flowlogs_{name}", doc, labels=[])
            family.add_metric([], value)
            out.append(family)
        dropped = CounterMetricFamily("felix_flowlogs_dropped", "What flow logs could not keep, by reason.",
                                      labels=["reason"])
        for reason, value in (("max_flows", s.dropped_flows), ("unreadable", s.unreadable),
                              ("socket_client", s.socket_dropped)):
            dropped.add_metric([reason], value)
        out.append(dropped)
        return iter(out)


ScrapeHook = Callable[[], Awaitable[object]]


class FelixMetrics:
    """Every metric Felix exports; one instance per agent (tests make their own)."""

    def __init__(self, *, process_metrics: bool = False) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=r)

        # Datastore and calculation graph.
        self.resync_state = Gauge(
            "felix_resync_state", "Current datastore state: 1 waiting for datastore, 2 resyncing, 3 in sync.",
            registry=r,
        )
        self.resyncs_started = CalicoCounter(
            "felix_resyncs_started", "Number of times Felix has started resyncing with the datastore.", registry=r
        )
        self.calc_graph_update_time = Summary(
            "felix_calc_graph_update_time_seconds",
            "Seconds to update the calculation graph for each batch of datastore updates.",
            registry=r,
        )
        self.calc_graph_updates_processed = CalicoCounter(
            "felix_calc_graph_updates_processed", "Number of datastore updates processed by the calculation graph.",
            ["type"], registry=r,
        )
        self.calc_graph_output_events = CalicoCounter(
            "felix_calc_graph_output_events", "Number of events emitted by the calculation graph.", registry=r
        )
        self.cluster_num_hosts = Gauge(
            "felix_cluster_num_hosts", "Total number of Calico hosts in the cluster.", registry=r
        )
        self.cluster_num_workload_endpoints = Gauge(
            "felix_cluster_num_workload_endpoints", "Total number of workload endpoints cluster-wide.", registry=r
        )
        self.cluster_num_host_endpoints = Gauge(
            "felix_cluster_num_host_endpoints", "Total number of host endpoints cluster-wide.", registry=r
        )

        # What is active on this host.
        self.active_local_endpoints = Gauge(
            "felix_active_local_endpoints", "Number of active endpoints on this host.", registry=r
        )
        self.active_local_policies = Gauge(
            "felix_active_local_policies", "Number of active policies on this host.", registry=r
        )
        self.active_local_selectors = Gauge(
            "felix_active_local_selectors", "Number of active selectors on this host.", registry=r
        )
        self.ipsets_calico = Gauge("felix_ipsets_calico", "Number of active Calico IP sets.", registry=r)

        # The dataplane.
        self.int_dataplane_apply_time = Summary(
            "felix_int_dataplane_apply_time_seconds", "Time in seconds that it took to apply a dataplane update.",
            registry=r,
        )
        self.int_dataplane_msg_batch_size = Summary(
            "felix_int_dataplane_msg_batch_size", "Number of messages processed in each batch.", registry=r
        )
        self.int_dataplane_messages = CalicoCounter(
            "felix_int_dataplane_messages", "Number of dataplane messages by type.", ["type"], registry=r
        )
        self.int_dataplane_failures = CalicoCounter(
            "felix_int_dataplane_failures", "Number of times dataplane updates failed and will be retried.",
            registry=r,
        )
        self.iptables_restore_calls = CalicoCounter(
            "felix_iptables_restore_calls", "Number of iptables-restore calls.", registry=r
        )
        self.iptables_restore_errors = CalicoCounter(
            "felix_iptables_restore_errors", "Number of iptables-restore errors.", registry=r
        )
        self.iptables_save_calls = CalicoCounter(
            "felix_iptables_save_calls", "Number of iptables-save calls.", registry=r
        )
        self.iptables_save_errors = CalicoCounter(
            "felix_iptables_save_errors", "Number of iptables-save errors.", registry=r
        )
        self.ipset_calls = CalicoCounter("felix_ipset_calls", "Number of ipset commands executed.", registry=r)
        self.ipset_errors = CalicoCounter("felix_ipset_errors", "Number of ipset command failures.", registry=r)
        self.nft_calls = CalicoCounter("felix_nft_calls", "Number of nft commands executed.", registry=r)
        self.nft_errors = CalicoCounter("felix_nft_errors", "Number of nft command failures.", registry=r)
        self.exec_time_micros = Summary(
            "felix_exec_time_micros", "Summary of time taken to fork/exec child processes", registry=r
        )

        # The verdict rules' kernel counters (`calico.felix.counters`), refreshed by a scrape hook.
        self.rule_counters = RuleCounters(registry=r)
        self.flow_logs = FlowLogMetrics(registry=r)
        self.scrape_hooks: list[ScrapeHook] = []

    def observe_tool(self, tool: str, seconds: float, ok: bool) -> None:
        """A kernel tool call reported by `calico.dataplane.process` (spawned, or libnftables as "nft")."""
        if tool.endswith("-restore") and "tables" in tool:  # iptables-restore, ip6tables-nft-restore, ...
            calls, errors = self.iptables_restore_calls, self.iptables_restore_errors
        elif tool.endswith("-save") and "tables" in tool:
            calls, errors = self.iptables_save_calls, self.iptables_save_errors
        elif tool == "ipset":
            calls, errors = self.ipset_calls, self.ipset_errors
        elif tool == "nft":
            calls, errors = self.nft_calls, self.nft_errors
        else:
            calls = errors = None
        if calls is not None and errors is not None:
            calls.inc()
            if not ok:
                errors.inc()
        self.exec_time_micros.observe(seconds * 1e6)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def response(self) -> Response:
        return Response(200, self.exposition(), CONTENT_TYPE_LATEST)

    async def scrape(self) -> Response:
        """A scrape: the hooks refresh what they feed (bounded: a failed or slow hook is logged, and the
        metrics are served as they are), then the exposition."""
        for hook in list(self.scrape_hooks):
            try:
                await asyncio.wait_for(hook(), 25.0)
            except Exception:
                log.warning("a metrics scrape hook failed; serving the last values", exc_info=True)
        return self.response()


def metrics_server(metrics: FelixMetrics, host: str, port: int) -> HttpServer:
    return HttpServer("prometheus", host, port, {"/metrics": metrics.scrape})

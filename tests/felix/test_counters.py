"""Felix's verdict rule counters through the daemon, against the real embedded store: a scrape reads the driver's
counters (at most once per SCRAPE_MAX_AGE) and exports them; the publisher writes them under the host's status
key with a lease (so they go when Felix stops) and rewrites them only when they change; a refresh reads them
too; a failing read keeps the last values. The dataplane is a RecordingDriver (the kernel side is in
tests/dataplane/test_rule_counters.py)."""

from __future__ import annotations

import asyncio

from calico.dataplane import ruleids as rid
from calico.dataplane.counters import RawCount
from calico.datastore.kv import KVStore
from calico.felix import counter_status as cs
from calico.felix.driver import RecordingDriver
from tests.felix.test_daemon import Running, kv, running, start  # noqa: F401 - fixtures
from tests.felix.util import wait_until
from tests.unit.felix.http_client import fetch

WEB = "PIA//0/default/prod/web"
TIER = "TID/w//default"
ENV = {"FELIX_COUNTERSREPORTINGINTERVALSECS": "0.2", "FELIX_IPTABLESREFRESHINTERVAL": "0.3"}


async def stored(store: KVStore) -> cs.HostCounters | None:
    got = await store.get(cs.counters_key("node1"))
    return None if got is None else cs.decode_counters("node1", got.value)


async def test_scrape_publish_refresh(kv: KVStore, running: list[Running]) -> None:  # noqa: F811
    drv = RecordingDriver()
    drv.counts = [RawCount("k1", WEB, 3, 300), RawCount("k2", TIER, 1, 60)]
    r = start(kv, ENV, driver=drv)
    running.append(r)
    await r.ready()
    port = r.daemon.metrics_server.port  # type: ignore[union-attr]

    body = (await fetch(port, "/metrics"))[2].decode()
    assert ('felix_policy_rule_packets_total{action="allow",direction="ingress",policy="prod/web",rule="0",'
            'tier="default"} 3.0') in body
    assert 'felix_dropped_bytes_total{direction="ingress",reason="tier_default",tier="default"} 60.0' in body

    # The publisher's value: what the explain reads.
    await wait_until(lambda: stored(kv), what="counters in the datastore")
    host = await stored(kv)
    assert host is not None and host.for_policy("default", "web", "prod") == (
        cs.RuleCount("policy", "default", "prod", "web", "ingress", 0, "allow", 3, 300),)
    writes = r.daemon.counter_publisher.writes  # type: ignore[union-attr]
    await asyncio.sleep(0.6)
    assert r.daemon.counter_publisher.writes == writes  # type: ignore[union-attr]  # unchanged: not rewritten

    # New counts reach both; a kernel rewrite (counts restarted under a new key) does not make them go down.
    drv.counts = [RawCount("k1b", WEB, 2, 200), RawCount("k2", TIER, 1, 60)]

    async def updated() -> bool:
        host = await stored(kv)
        return host is not None and host.for_policy("default", "web", "prod")[0].packets == 5

    await wait_until(updated, what="updated counters in the datastore")
    assert r.metric("felix_policy_rule_bytes_total", tier="default", policy="prod/web", direction="ingress",
                    rule="0", action="allow") == 500

    # Bounded: a burst of scrapes makes at most one read per SCRAPE_MAX_AGE.
    before = drv.counter_reads
    await asyncio.gather(*(fetch(port, "/metrics") for _ in range(10)))
    assert drv.counter_reads - before <= 2

    # A failing read keeps the last values (and is counted).
    drv.fail_reads = 100
    await asyncio.sleep(0.5)
    body = (await fetch(port, "/metrics"))[2].decode()
    assert "felix_rule_counter_read_errors_total 0.0" not in body
    assert r.metric("felix_policy_rule_packets_total", tier="default", policy="prod/web", direction="ingress",
                    rule="0", action="allow") == 5
    drv.fail_reads = 0

    # Stopped: the leased key goes.
    assert await r.stop() == 0
    await wait_until(lambda: _absent(kv), timeout=8, what="counters key gone after stop")


async def _absent(store: KVStore) -> bool:
    return await stored(store) is None


async def test_hashed_identities_are_named_by_the_policies_felix_was_given(
    kv: KVStore, running: list[Running],  # noqa: F811
) -> None:
    from calico.calculation.events import PolicyID, PolicyUpdate

    long_pid = PolicyID("default", "p" * 80, "prod")
    text = rid.policy_rule(long_pid, False, 0, rid.Action.DENY).text
    assert rid.decode(text).hashed
    drv = RecordingDriver()
    drv.counts = [RawCount("k", text, 4, 40)]
    r = start(kv, ENV, driver=drv)
    running.append(r)
    await r.ready()
    r.daemon._note_applied([PolicyUpdate(long_pid, (), ())])  # as if the graph had sent it
    await r.daemon.counters.refresh()  # type: ignore[union-attr]
    assert r.metric("felix_policy_rule_packets_total", tier="default", policy=f"prod/{'p' * 80}",
                    direction="egress", rule="0", action="deny") == 4

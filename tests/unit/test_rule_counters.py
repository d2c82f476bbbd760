"""Verdict rule counters without a kernel: monotonic totals, the nft planner's named counters over FakeNft (kept
across chain rewrites and whole-table replacements, deleted after their last rule), iptables' `-c` parsing,
Felix's read cache, its Prometheus families and the datastore value the explain reads."""

from __future__ import annotations

import asyncio
import json

import pytest

from calico.calculation import events as ev
from calico.dataplane import ruleids as rid
from calico.dataplane.counters import CounterTotals, RawCount
from calico.dataplane.iptables import model as ipt_model
from calico.dataplane.iptables.text import parse_counts, rule_lines
from calico.dataplane.nftables import ops
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.fake import FakeNft
from calico.dataplane.state import DesiredState
from calico.felix import counter_status as cs
from calico.felix.counters import PolicyCounters
from calico.felix.metrics import FelixMetrics

PID = ev.PolicyID("default", "web", "ns1")
ALLOW0 = rid.policy_rule(PID, True, 0, rid.Action.ALLOW)
DENY1 = rid.policy_rule(PID, True, 1, rid.Action.DENY)


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id="r", **kw)  # type: ignore[arg-type]


def state_with(policy: ev.PolicyUpdate | None) -> DesiredState:
    s = DesiredState()
    tier = ev.TierInfo("default", "Deny", ingress_policies=(PID,))
    events: list[ev.DataplaneEvent] = [policy] if policy else []
    s.apply_all([*events, ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns1", "a"), "cali0000000000a", None,
                                                    ("198.18.1.2/32",), (), (tier,), ()), ev.InSync()])
    return s


# --- totals ---------------------------------------------------------------------------------------------------


def test_totals_survive_rewrites_and_forget_what_is_gone() -> None:
    t = CounterTotals()
    assert t.update([RawCount("k1", "A", 5, 50), RawCount("k2", "A", 1, 10), RawCount("k3", "B", 2, 20)]) == {
        "A": (6, 60), "B": (2, 20)}
    # k1 rewritten (counts restarted), k2 gone (its chain replaced by k4): nothing A had counted is lost.
    assert t.update([RawCount("k1", "A", 1, 10), RawCount("k4", "A", 0, 0), RawCount("k3", "B", 3, 30)]) == {
        "A": (7, 70), "B": (3, 30)}
    assert t.update([RawCount("k1", "A", 2, 20), RawCount("k4", "A", 1, 10), RawCount("k3", "B", 3, 30)]) == {
        "A": (9, 90), "B": (3, 30)}
    # B's identity left the kernel: its series ends; when it comes back it starts again.
    assert t.update([RawCount("k1", "A", 2, 20), RawCount("k4", "A", 1, 10)]) == {"A": (9, 90)}
    assert t.update([RawCount("k1", "A", 2, 20), RawCount("k4", "A", 1, 10), RawCount("k5", "B", 1, 10)]) == {
        "A": (9, 90), "B": (1, 10)}


# --- nftables: named counters ------------------------------------------------------------------------------------


async def test_nft_named_counters_keep_counting_across_rewrites_and_replacements() -> None:
    fake = FakeNft()
    backend = NftBackend(fake)
    s = state_with(ev.PolicyUpdate(PID, (rule(protocol="TCP"), rule("Deny")), ()))
    await backend.apply(s)
    assert fake.table is not None and {ALLOW0.text, DENY1.text, "TID/w//default", "UED/w"} <= set(fake.table.counters)
    fake.count(ALLOW0.text, 3, 300)
    fake.count("TID/w//default", 1, 60)
    # The policy changes: its chain is rewritten, its counters are not re-created.
    s.apply(ev.PolicyUpdate(PID, (rule(protocol="UDP"), rule("Deny")), ()))
    plan = await backend.apply(s)
    assert not plan.full and not any(isinstance(o, ops.AddCounter | ops.DeleteCounter) for o in plan.ops)
    assert fake.table.counters[ALLOW0.text] == (3, 300)
    # A whole-table replacement (start of day after a restart, a repair) starts the new counters from the old.
    backend.planner.forget()
    plan = await backend.apply(s)
    assert plan.full and fake.table.counters[ALLOW0.text] == (3, 300)
    assert fake.table.counters["TID/w//default"] == (1, 60)
    counts = {r.rule: (r.packets, r.bytes) for r in await backend.read_counters()}
    assert counts[ALLOW0.text] == (3, 300) and counts[DENY1.text] == (0, 0)
    # The Deny rule goes: its counter is deleted after the rule, in the same transaction (FakeNft refuses a
    # counter deleted while a rule still counts into it).
    s.apply(ev.PolicyUpdate(PID, (rule(protocol="UDP"),), ()))
    plan = await backend.apply(s)
    assert [o for o in plan.ops if isinstance(o, ops.DeleteCounter)] == [ops.DeleteCounter(DENY1.text)]
    assert DENY1.text not in fake.table.counters and fake.table.counters[ALLOW0.text] == (3, 300)
    # A new rule index brings a new counter, declared before the rule that counts into it.
    s.apply(ev.PolicyUpdate(PID, (rule(protocol="UDP"), rule("Pass")), ()))
    plan = await backend.apply(s)
    pass1 = rid.policy_rule(PID, True, 1, rid.Action.PASS).text
    assert [o for o in plan.ops if isinstance(o, ops.AddCounter)] == [ops.AddCounter(pass1)]
    assert plan.text.index(f"add counter inet calico {pass1}") < plan.text.index(f'counter name "{pass1}"')
    assert await backend.check_and_repair(s) is False  # read-back agrees (counters included)


# --- iptables: comments and `iptables-save -c` ---------------------------------------------------------------


def test_iptables_comment_carries_the_identity_and_save_counts_parse_back() -> None:
    chain = ipt_model.Chain("cali-pi-x", (ipt_model.Rule("-p tcp", "-j DROP", DENY1.text),
                                          ipt_model.Rule("", "-j RETURN")))
    line = rule_lines([chain])[0]
    assert f'--comment "cali:{chain.hashes[0]} {DENY1.text}" -j DROP' in line
    # The identity is part of the hash: a renumbered rule is a different rule to read-back.
    other = ipt_model.Chain("cali-pi-x", (ipt_model.Rule("-p tcp", "-j DROP", "PID//2/default/ns1/web"),))
    assert other.hashes[0] != chain.hashes[0]
    saved = "\n".join([
        "*filter", ":cali-pi-x - [0:0]",
        f"[7:420] {line}",
        f'[1:2] -A cali-pi-x -m comment --comment "cali:{chain.hashes[1]}" -j RETURN',
        '[9:9] -A OTHER -m comment --comment "cali:abc NED/w" -j DROP',  # not our chain
        "COMMIT",
    ])
    assert parse_counts(saved, "4/filter") == [RawCount(f"4/filter/cali-pi-x/{chain.hashes[0]}", DENY1.text, 7, 420)]


# --- Felix: reads, cache, metrics, status ----------------------------------------------------------------------


async def test_policy_counters_cache_decode_resolve_and_survive_failures() -> None:
    now = [100.0]
    long_pid = ev.PolicyID("default", "p" * 70, "ns1")
    hashed = rid.policy_rule(long_pid, False, 0, rid.Action.DENY)
    raw = [RawCount("a", ALLOW0.text, 2, 200), RawCount("b", hashed.text, 1, 60), RawCount("c", "garbage!", 1, 1)]
    reads = []
    fail = [False]

    async def read() -> list[RawCount]:
        reads.append(1)
        if fail[0]:
            raise RuntimeError("boom")
        return list(raw)

    pc = PolicyCounters(read, lambda: rid.OwnerIndex([long_pid]), clock=lambda: now[0])
    snap = await pc.refresh()
    assert snap == {ALLOW0: (2, 200), hashed: (1, 60)}  # the hashed owner named back; garbage left out
    raw[0] = RawCount("a", ALLOW0.text, 5, 500)
    now[0] += 0.5
    assert (await pc.refresh(max_age=1.0))[ALLOW0] == (2, 200) and len(reads) == 1  # cached
    now[0] += 1.0
    assert (await pc.refresh(max_age=1.0))[ALLOW0] == (5, 500) and len(reads) == 2
    # Concurrent callers share one read.
    now[0] += 5
    await asyncio.gather(*(pc.refresh(max_age=1.0) for _ in range(5)))
    assert len(reads) == 3
    fail[0] = True
    assert (await pc.refresh())[ALLOW0] == (5, 500) and pc.errors == 1  # a failed read keeps the last values


async def test_prometheus_families_and_labels() -> None:
    snapshot = {
        ALLOW0: (4, 400), DENY1: (1, 100),
        rid.profile_rule("kns.ns1", False, 0, rid.Action.ALLOW): (7, 700),
        rid.tier_default("default", True, rid.Stage.WORKLOAD): (2, 120),
        rid.tier_default("default", True, rid.Stage.HOST): (1, 60),  # stages are summed
        rid.verdict(rid.Kind.NO_MATCH, True, rid.Stage.WORKLOAD): (3, 180),
        rid.verdict(rid.Kind.UNKNOWN_IFACE, False, rid.Stage.WORKLOAD): (5, 300),
        rid.verdict(rid.Kind.SPOOFED, False, rid.Stage.WORKLOAD): (6, 360),
        rid.verdict(rid.Kind.FAILSAFE, True, rid.Stage.HOST, rid.Action.ALLOW): (8, 480),
    }

    async def read() -> list[RawCount]:
        return [RawCount(str(i), r.text, p, b) for i, (r, (p, b)) in enumerate(snapshot.items())]

    m = FelixMetrics()
    pc = PolicyCounters(read)
    m.rule_counters.attach(pc)
    m.scrape_hooks.append(pc.refresh)
    text = (await m.scrape()).body.decode()
    v = m.registry.get_sample_value
    policy = {"tier": "default", "policy": "ns1/web", "direction": "ingress", "rule": "0", "action": "allow"}
    assert v("felix_policy_rule_packets_total", policy) == 4 and v("felix_policy_rule_bytes_total", policy) == 400
    assert v("felix_policy_rule_packets_total", {**policy, "rule": "1", "action": "deny"}) == 1
    assert v("felix_profile_rule_packets_total", {"profile": "kns.ns1", "direction": "egress", "rule": "0",
                                                  "action": "allow"}) == 7
    drop = {"tier": "default", "direction": "ingress", "reason": "tier_default"}
    assert v("felix_dropped_packets_total", drop) == 3 and v("felix_dropped_bytes_total", drop) == 180
    assert v("felix_dropped_packets_total", {"reason": "profile_fallthrough", "tier": "", "direction": "ingress"}) == 3
    assert v("felix_dropped_packets_total", {"reason": "fail_closed", "tier": "", "direction": "egress"}) == 5
    assert v("felix_dropped_packets_total", {"reason": "anti_spoofing", "tier": "", "direction": "egress"}) == 6
    assert v("felix_accepted_packets_total", {"reason": "failsafe", "direction": "ingress"}) == 8
    assert v("felix_rule_counter_read_errors_total") == 0
    assert "# TYPE felix_policy_rule_packets_total counter" in text
    assert "198.18." not in text  # never an address


def test_status_value_round_trips_and_bad_values_name_the_field() -> None:
    snapshot = {ALLOW0: (4, 400), DENY1: (0, 0), rid.tier_default("default", True, rid.Stage.WORKLOAD): (2, 120),
                rid.profile_rule("kns.ns1", False, 0, rid.Action.ALLOW): (1, 10)}
    value = cs.encode_counters("2025-01-01T00:00:00Z", snapshot)
    host = cs.decode_counters("h1", value)
    assert host.time == "2025-01-01T00:00:00Z"
    assert host.for_policy("default", "web", "ns1") == (
        cs.RuleCount("policy", "default", "ns1", "web", "ingress", 0, "allow", 4, 400),)  # zero counts left out
    assert host.for_profile("kns.ns1")[0].packets == 1
    assert host.verdicts == (cs.VerdictCount("tier_default", "deny", "workload", "default", "ingress", 2, 120),)
    key = cs.counters_key("h1")
    assert key == "/calico/felix/v2/no-region/host/h1/policy_counters"
    assert cs.parse_counters_key(key) == ("no-region", "h1")
    assert cs.parse_counters_key("/calico/felix/v2/no-region/host/h1/status") is None
    bad = json.dumps({"time": "t", "rules": [{"kind": "policy", "tier": "default", "namespace": "ns1", "name": "web",
                                              "direction": "ingress", "rule": "0", "action": "allow", "packets": 1,
                                              "bytes": 1}], "verdicts": []}).encode()
    with pytest.raises(ValueError, match=r"host h2: rules\[0\]: field 'rule' must be int"):
        cs.decode_counters("h2", bad)
    counts = cs.policy_counts([(key, value), (cs.counters_key("h2"), bad), (cs.counters_key("h3", "region-x"),
                               cs.encode_counters("t", {ALLOW0: (1, 5)})), ("/calico/felix/v2/x/status", b"{}")],
                              "default", "web", "ns1")
    assert set(counts.by_host) == {"h1", "h3"} and "field 'rule'" in counts.errors["h2"]
    assert counts.totals() == {("ingress", 0, "allow"): (5, 405)}

"""Address-set deltas are planned in time proportional to the delta and give exactly what a whole re-render
gives (the model the kernel would hold), whatever mix of spellings, families, prefixes and batches."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calculation import events as ev
from calico.dataplane.nftables import names as nft_names
from calico.dataplane.nftables.diff import Planner, plan_full
from calico.dataplane.state import DesiredState

PID = ev.PolicyID("default", "p")

_hosts4 = st.integers(0, 7).map(lambda i: f"198.18.0.{i}")
_hosts6 = st.integers(0, 7).map(lambda i: f"fd00::{i:x}")
member = st.one_of(
    _hosts4, _hosts4.map(lambda a: f"{a}/32"), _hosts6, _hosts6.map(lambda a: f"{a}/128"),
    _hosts6.map(lambda a: a.replace("fd00::", "fd00:0:0:0:0:0:0:")),  # another spelling, same address
    st.sampled_from(["198.18.0.0/30", "fd00::/126"]),
)
members = st.frozensets(member, max_size=6)
step = st.one_of(
    st.tuples(st.just("delta"), members, members),
    st.tuples(st.just("update"), members, st.just(frozenset())),
)


def setup() -> tuple[DesiredState, Planner]:
    s = DesiredState()
    s.apply_all([
        ev.IPSetUpdate("set1", ev.IPSetType.NET, frozenset({"198.18.0.1/32"})),
        ev.PolicyUpdate(PID, inbound=(ev.RenderedRule(action="Allow", rule_id="r", src_ip_set_ids=("set1",)),),
                        outbound=()),
    ])
    s.in_sync = True
    planner = Planner()
    planner.commit(planner.plan(s, s.take_dirty()))
    return s, planner


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(step, min_size=1, max_size=4), max_size=6))
def test_delta_plans_match_a_full_render(batches: list[list[tuple[str, frozenset[str], frozenset[str]]]]) -> None:
    s, planner = setup()
    for batch in batches:
        for kind, a, b in batch:
            if kind == "delta":
                s.apply(ev.IPSetDelta("set1", added=a - b, removed=b - a))
            else:
                s.apply(ev.IPSetUpdate("set1", ev.IPSetType.NET, a))
        plan = planner.plan(s, s.take_dirty())
        planner.commit(plan)
        want = plan_full(s).model
        for fam in (4, 6):
            name = nft_names.set_name("set1", fam)
            assert plan.model.sets[name].elements == want.sets[name].elements, (fam, s.ipsets["set1"].members)


def test_a_host_delta_touches_only_its_elements() -> None:
    s, planner = setup()
    big = frozenset(f"198.18.{i // 250}.{i % 250 + 1}/32" for i in range(5000))
    s.apply(ev.IPSetUpdate("set1", ev.IPSetType.NET, big))
    planner.commit(planner.plan(s, s.take_dirty()))
    s.apply(ev.IPSetDelta("set1", added=frozenset({"198.18.100.1/32"}), removed=frozenset({"198.18.0.1/32"})))
    plan = planner.plan(s, s.take_dirty())
    assert "198.18.100.1" in plan.text and "delete element inet calico s4-set1 { 198.18.0.1 }" in plan.text
    assert len(plan.text) < 500, plan.text  # not a re-declaration of 5,000 elements


def test_adjacent_hosts_stay_separate_elements() -> None:
    s, planner = setup()
    s.apply(ev.IPSetUpdate("set1", ev.IPSetType.NET, frozenset({"198.18.0.0", "198.18.0.1"})))
    plan = planner.plan(s, s.take_dirty())
    assert plan.model.sets["s4-set1"].elements == {"198.18.0.0", "198.18.0.1"}  # not merged into a /31

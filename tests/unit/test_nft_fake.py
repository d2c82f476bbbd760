"""The nft planner, backend and repair logic over the in-memory transport (`FakeNft`): no root, milliseconds.

The fake applies the same typed operations the real transports write as nft text, refuses what nft refuses
and lists its table as `nft -j` does (tests/dataplane/test_nft_transport_contract.py holds it to the real
thing). So here: incremental transactions, in any order of events, leave exactly the table a full render
gives and are never refused; tampering with the table is found and repaired; a refused transaction falls
back to a whole-table replacement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.driver import KernelDriver
from calico.dataplane.nftables import ops
from calico.dataplane.nftables.backend import NftBackend, NftError, json_shape, model_shape
from calico.dataplane.nftables.fake import FakeNft
from calico.dataplane.nftables.model import NftChain, NftSet, TableModel
from calico.dataplane.nftables.names import FW_MAP, set_name, tw_chain
from calico.dataplane.nftables.table import empty_model, render_model
from calico.dataplane.state import DesiredState

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id="r", **kw)  # type: ignore[arg-type]


P1, P2 = ev.PolicyID("default", "p1", "ns"), ev.PolicyID("sec", "p2")
ADDRS = [f"198.18.0.{i}/32" for i in range(1, 7)] + ["fd00:c411::1/128", "198.18.8.0/24", "fd00:c411:1::/64"]


def wep(n: int, iface: str | None = None, tiers: tuple[ev.TierInfo, ...] = (),
        profiles: tuple[str, ...] = ()) -> ev.WorkloadEndpointUpdate:
    return ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns", f"w{n}"), iface or f"cali{n:011d}", None,
                                     (f"198.18.1.{n}/32",), (f"fd00:c411::{n:x}/128",), tiers, profiles)


def hep(iface: str, tiers: tuple[ev.TierInfo, ...] = (), untracked: tuple[ev.TierInfo, ...] = (),
        pre_dnat: tuple[ev.TierInfo, ...] = ()) -> ev.HostEndpointUpdate:
    return ev.HostEndpointUpdate("h1", iface, (), tiers, untracked, pre_dnat, (), ("prof",))


def same_table(fake: FakeNft, model: TableModel) -> None:
    """The fake holds exactly `model`: every set with its elements, every map entry, every chain's rules."""
    assert fake.table is not None
    held = fake.table.as_model()
    assert {n: (s.type, s.interval, s.elements) for n, s in held.sets.items()} == {
        n: (s.type, s.interval, s.elements) for n, s in model.sets.items()}
    assert held.maps == model.maps
    assert {n: (c.hook, c.rules) for n, c in held.chains.items()} == {
        n: (c.hook, c.rules) for n, c in model.chains.items()}


def full_state() -> DesiredState:
    s = DesiredState()
    tier = ev.TierInfo("default", "Deny", (P1,), (P1,))
    s.apply_all([
        ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset(ADDRS[:3])),
        ev.IPSetUpdate("np", ev.IPSetType.IP_PORT, frozenset({"198.18.1.1,tcp:80", "fd00:c411::1,udp:53"})),
        ev.PolicyUpdate(P1, (rule(src_ip_set_ids=("sel",)), rule(dst_named_port_set_ids=("np",))), (rule(),)),
        ev.ProfileUpdate("prof", (rule(),), (rule("Pass"),)),
        wep(1, tiers=(tier,)), wep(2, tiers=(tier,)), wep(3, profiles=("prof",)),
        ev.InSync(),
    ])
    return s


def test_a_full_apply_leaves_the_rendered_table_and_lists_like_nft() -> None:
    fake, s = FakeNft(), full_state()
    backend = NftBackend(fake)
    plan = run(backend.apply(s))
    assert plan.full and fake.transactions == [plan.ops] and isinstance(plan.ops[0], ops.ReplaceTable)
    same_table(fake, render_model(s))
    doc = run(fake.list_table())
    assert doc is not None and json_shape(doc) == model_shape(render_model(s))
    items = doc["nftables"]
    fwd = next(i["chain"] for i in items if i.get("chain", {}).get("name") == "forward")
    assert (fwd["type"], fwd["hook"], fwd["prio"], fwd["policy"]) == ("filter", "forward", 0, "accept")
    elems = next(i["set"] for i in items if i.get("set", {}).get("name") == "n4-np")["elem"]
    assert elems == [{"concat": ["198.18.1.1", "tcp", 80]}]
    assert not run(backend.check_and_repair(s))


# --- incremental transactions: any sequence of events, the same table as a full render ----------------------

POOLS = ["198.18.0.0/16", "198.20.0.0/24", "fd00:1::/48"]
_tiers = st.sampled_from([(), (ev.TierInfo("default", "Deny", (P1,), (P1,)),),
                          (ev.TierInfo("sec", "Pass", (P2,)), ev.TierInfo("default", "Deny", (P1,)))])
_members = st.frozensets(st.sampled_from(ADDRS), max_size=5)
_event = st.one_of(
    st.builds(lambda m: ev.IPSetUpdate("sel", ev.IPSetType.NET, m), _members),
    st.builds(lambda a, r: ev.IPSetDelta("sel", a - r, r - a), _members, _members),
    st.just(ev.IPSetRemove("sel")),
    st.builds(lambda m: ev.IPSetUpdate("other", ev.IPSetType.NET, m), _members),
    st.just(ev.IPSetRemove("other")),
    st.builds(lambda sid, out: ev.PolicyUpdate(P1, (rule(src_ip_set_ids=(sid,)),), (rule(),) if out else ()),
              st.sampled_from(["sel", "other"]), st.booleans()),
    st.just(ev.PolicyRemove(P1)),
    st.builds(lambda deny: ev.PolicyUpdate(P2, (rule("Deny" if deny else "Pass"),), ()), st.booleans()),
    st.just(ev.PolicyRemove(P2)),
    st.just(ev.ProfileUpdate("prof", (rule(),), ())),
    st.just(ev.ProfileRemove("prof")),
    st.builds(lambda n, alt, tiers, prof: wep(n, f"tap{n:011d}" if alt else None, tiers, ("prof",) if prof else ()),
              st.integers(1, 3), st.booleans(), _tiers, st.booleans()),
    st.builds(lambda n: ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns", f"w{n}")), st.integers(1, 3)),
    st.builds(lambda iface, tiers, stage: hep(iface, tiers, tiers if stage == "u" else (), tiers if stage == "p" else ()),
              st.sampled_from(["eth1", "*"]), _tiers, st.sampled_from(["", "u", "p"])),
    st.just(ev.HostEndpointRemove("h1")),
    st.builds(lambda cidr, nat: ev.IPPoolUpdate(cidr, nat, "Never", "Never", False, 26),
              st.sampled_from(POOLS), st.booleans()),
    st.builds(ev.IPPoolRemove, st.sampled_from(POOLS)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_event, min_size=1, max_size=6), min_size=1, max_size=6))
def test_incremental_transactions_give_the_full_render(batches: list[list[ev.DataplaneEvent]]) -> None:
    fake = FakeNft()
    backend = NftBackend(fake)
    s = DesiredState(DataplaneConfig(interface_prefixes=("cali", "tap")))
    s.apply(ev.InSync())
    run(backend.apply(s))
    for batch in batches:
        s.apply_all(batch)
        plan = run(backend.apply(s))
        assert not plan.full, "an incremental transaction was refused"  # the backend would have replaced it all
        same_table(fake, render_model(s))
    assert fake.refused == []
    assert not run(backend.check_and_repair(s))  # read-back agrees with the planner's model


# --- read-back and repair -------------------------------------------------------------------------------------


def tampered(kind: str, fake: FakeNft) -> None:
    if kind == "table deleted":
        fake.delete_table()
    elif kind == "chain flushed":
        fake.flush_chain(tw_chain(wep(1).iface))
    elif kind == "element deleted":
        fake.delete_element(set_name("sel", 4), "198.18.0.1")
    elif kind == "rule replaced":
        fake.replace_rule(tw_chain(wep(1).iface), 1, "accept")
    elif kind == "map entry deleted":
        assert fake.table is not None
        del fake.table.maps[FW_MAP][wep(2).iface]


@pytest.mark.parametrize("kind", ["table deleted", "chain flushed", "element deleted", "rule replaced",
                                  "map entry deleted"])
def test_tampering_is_found_and_repaired(kind: str) -> None:
    fake, s = FakeNft(), full_state()
    backend = NftBackend(fake)
    run(backend.apply(s))
    tampered(kind, fake)
    assert run(backend.check_and_repair(s))
    assert backend.repairs == 1 and backend.full_applies == 2
    same_table(fake, render_model(s))
    assert not run(backend.check_and_repair(s))


def test_another_tables_rule_count_is_not_ours_to_mind() -> None:
    """A rule added to one of our chains (same count elsewhere) is drift too: every rule is compared."""
    fake, s = FakeNft(), full_state()
    backend = NftBackend(fake)
    run(backend.apply(s))
    run(fake.run([ops.AddRule("forward", "accept")]))  # someone appends an accept to our base chain
    assert run(backend.check_and_repair(s))
    same_table(fake, render_model(s))


def test_a_refused_incremental_transaction_falls_back_to_a_full_replacement() -> None:
    fake, s = FakeNft(), full_state()
    backend = NftBackend(fake)
    run(backend.apply(s))
    fake.delete_element(set_name("sel", 4), "198.18.0.1")  # the kernel no longer holds what the planner thinks
    s.apply(ev.IPSetDelta("sel", frozenset(), frozenset({"198.18.0.1/32"})))
    plan = run(backend.apply(s))
    assert plan.full and backend.full_applies == 2 and backend.incremental_applies == 0
    assert len(fake.refused) == 1 and "element does not exist" in fake.refused[0][1]
    assert isinstance(fake.refused[0][0][0], ops.DeleteElements)
    same_table(fake, render_model(s))


def test_when_the_replacement_fails_too_the_next_apply_starts_over() -> None:
    fake, s = FakeNft(), full_state()
    backend = NftBackend(fake)
    run(backend.apply(s))
    s.apply(ev.IPSetDelta("sel", frozenset({"198.18.0.4/32"}), frozenset()))
    fake.failures = ["Error: Could not process rule: Device or resource busy", "Error: Cannot allocate memory"]
    with pytest.raises(NftError, match="Cannot allocate memory"):
        run(backend.apply(s))
    assert [type(txn[0]) for txn, _ in fake.refused] == [ops.AddSet, ops.ReplaceTable]
    assert backend.planner.applied is None  # what the kernel holds is unknown: plan from scratch
    s.apply(ev.IPSetDelta("sel", frozenset({"198.18.0.5/32"}), frozenset()))
    plan = run(backend.apply(s))
    assert plan.full
    same_table(fake, render_model(s))


def test_fail_closed_table_is_installed_once_and_a_previous_one_kept() -> None:
    fake = FakeNft()
    backend = NftBackend(fake)
    run(backend.install_fail_closed(("cali", "tap")))
    same_table(fake, empty_model(("cali", "tap")))
    run(NftBackend(fake).install_fail_closed())  # a restarted agent finds its table: keeps it
    assert len(fake.transactions) == 1


async def test_kernel_driver_over_the_fake() -> None:
    fake = FakeNft()
    driver = KernelDriver(NftBackend(fake), DataplaneConfig())
    await driver.start()
    same_table(fake, empty_model())
    s = full_state()
    await driver.apply([*s.policies.values(), ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset(ADDRS[:3]))])
    assert len(fake.transactions) == 1  # nothing programmed before InSync
    await driver.apply([ev.InSync()])
    assert len(fake.transactions) == 2
    fake.delete_table()
    await driver.refresh()
    assert fake.table is not None and len(fake.transactions) == 3
    await driver.stop()


# --- the fake refuses what nft refuses, atomically --------------------------------------------------------------


def test_fake_refusals_leave_the_table_unchanged() -> None:
    fake = FakeNft()
    run(fake.run([ops.ReplaceTable(render_model(full_state()))]))
    before = fake.table.as_model() if fake.table else None
    group = next(n for n in before.chains if n.startswith("pgi-")) if before else ""
    refusals = {
        "busy chain": [ops.FlushChain(group), ops.DeleteChain(group)],  # a tw- chain still goes there
        "busy set": [ops.DeleteSet(set_name("sel", 4))],
        "missing element": [ops.DeleteElements(set_name("sel", 4), ("198.18.9.9",))],
        "missing chain": [ops.FlushChain("nochain")],
        "dangling jump": [ops.AddChain("x"), ops.AddRule("x", "jump nochain")],
        "dangling set": [ops.AddChain("x"), ops.AddRule("x", "ip saddr @s4-none accept")],
        "other type": [ops.AddSet(NftSet(set_name("sel", 4), "ipv6_addr", True, frozenset()))],
        "overlap": [ops.AddSet(NftSet(set_name("sel", 4), "ipv4_addr", True, frozenset({"198.18.0.0/24"})))],
        "verdict clash": [ops.AddMapElements(FW_MAP, ((wep(1).iface, "goto forward"),))],
        "hook on a chain": [ops.AddChain(group, "type filter hook input priority filter; policy accept;")],
        "map to nowhere": [ops.AddMapElements(FW_MAP, (("cali9", "goto fw-cali9"),))],
    }
    for what, txn in refusals.items():
        with pytest.raises(NftError):
            run(fake.run([ops.AddChain("harmless"), *txn]))
        assert fake.table is not None and fake.table.as_model() == before, what  # atomic: nothing applied
    assert len(fake.refused) == len(refusals)
    run(fake.run([ops.AddSet(NftSet(set_name("sel", 4), "ipv4_addr", True, frozenset({"198.18.0.1"})))]))  # no-op
    assert fake.table is not None and fake.table.as_model() == before


def test_chain_model_round_trip() -> None:
    fake = FakeNft()
    chain = NftChain("c", ("accept",))
    run(fake.run([ops.ReplaceTable(TableModel(chains={"c": chain}))]))
    assert fake.table is not None and fake.table.as_model().chains == {"c": chain}

"""natOutgoing, rendered: the nft pool sets and srcnat chain, the iptables nat chains and pool ipsets, and that a
pool change is a set change and nothing else on both backends (the real packets: tests/dataplane/
test_nat_outgoing.py)."""

from __future__ import annotations

import asyncio

from calico.calculation import events as ev
from calico.dataplane.iptables import ipsets as ips
from calico.dataplane.iptables import nat as ipt_nat
from calico.dataplane.iptables import side as ipt_side
from calico.dataplane.iptables import text as ipt_text
from calico.dataplane.iptables.plan import Planner as IptPlanner
from calico.dataplane.iptables.plan import plan_full
from calico.dataplane.nftables import ops
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.fake import FakeNft
from calico.dataplane.nftables.nat import NAT_CHAIN
from calico.dataplane.nftables.table import render_model
from tests.helpers.network_events import pool, state

POOLS = (pool("198.18.0.0/16", nat=True), pool("198.20.0.0/16"), pool("fd00:1::/48", nat=True))


def test_nft_sets_and_chain() -> None:
    model = render_model(state(*POOLS))
    assert model.sets["s4-ipam/all-pools"].elements == {"198.18.0.0/16", "198.20.0.0/16"}
    assert model.sets["s4-ipam/masq-pools"].elements == {"198.18.0.0/16"}
    assert model.sets["s6-ipam/all-pools"].elements == model.sets["s6-ipam/masq-pools"].elements == {"fd00:1::/48"}
    assert model.sets["s4-ipam/all-pools"].interval
    chain = model.chains[NAT_CHAIN]
    assert chain.hook == "type nat hook postrouting priority srcnat; policy accept;"
    assert chain.rules[-2:] == (  # after the floating IPs' SNAT (tests/unit/test_ipnat_render.py)
        "ip saddr @s4-ipam/masq-pools ip daddr != @s4-ipam/all-pools masquerade",
        "ip6 saddr @s6-ipam/masq-pools ip6 daddr != @s6-ipam/all-pools masquerade",
    )
    snat = render_model(state(*POOLS, nat_outgoing_address="198.19.0.9")).chains[NAT_CHAIN]
    assert snat.rules[-2].endswith("snat ip to 198.19.0.9") and snat.rules[-1].endswith("masquerade")
    assert render_model(state()).sets["s4-ipam/masq-pools"].elements == frozenset()  # no pools: nothing matches


def test_nft_pool_change_is_only_set_elements() -> None:
    fake = FakeNft()
    backend = NftBackend(fake)
    s = state(*POOLS)
    asyncio.run(backend.apply(s))
    s.apply(pool("198.18.0.0/16", nat=False))
    plan = asyncio.run(backend.apply(s))
    assert not plan.full
    assert plan.ops == (ops.DeleteElements("s4-ipam/masq-pools", ("198.18.0.0/16",)),)
    s.apply(pool("198.22.0.0/16", nat=True))  # (198.21.0.0/16 would merge with 198.20.0.0/16 into a /15)
    plan = asyncio.run(backend.apply(s))
    assert {type(o) for o in plan.ops} == {ops.AddSet} and {o.set.name for o in plan.ops} == {  # type: ignore[union-attr]
        "s4-ipam/all-pools", "s4-ipam/masq-pools"}
    assert fake.table is not None and fake.table.sets["s4-ipam/masq-pools"].elements == {"198.22.0.0/16"}
    assert not asyncio.run(backend.check_and_repair(s))


def test_iptables_nat_chains_by_calicos_names() -> None:
    s = state(*POOLS)
    chains = {c.name: c for c in ipt_nat.nat_chains(s.config, 4)}
    assert set(chains) == {"cali-PREROUTING", "cali-OUTPUT", "cali-POSTROUTING", "cali-fip-dnat", "cali-fip-snat",
                           "cali-nat-outgoing"}
    assert [r.target for r in chains["cali-POSTROUTING"].rules] == ["-j cali-fip-snat", "-j cali-nat-outgoing"]
    [rule] = chains["cali-nat-outgoing"].rules
    assert rule.match == "-m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst"
    assert rule.target == "-j MASQUERADE"
    v6 = {c.name: c for c in ipt_nat.nat_chains(s.config, 6)}
    assert "cali60masq-ipam-pools" in v6["cali-nat-outgoing"].rules[0].match
    snat = ipt_nat.nat_chains(state(nat_outgoing_address="198.19.0.9").config, 4)[-1].rules[0]
    assert snat.target == "-j SNAT --to-source 198.19.0.9"
    assert ipt_nat.nat_chains(state(nat_outgoing_address="198.19.0.9").config, 6)[-1].rules[0].target == \
        "-j MASQUERADE"
    text = ipt_side.side_restore_text("nat", ipt_nat.nat_chains(s.config, 4), ipt_side.SavedSide())
    assert all(f"-I {b} 1 " in text for b in ("PREROUTING", "OUTPUT", "POSTROUTING")) and "-A cali-POSTROUTING " in text


def test_iptables_pool_ipsets_follow_the_pools_alone() -> None:
    s = state(*POOLS)
    full = plan_full(s, {f: ipt_text.SavedTable() for f in (4, 6)}, set())
    assert full.sets["cali40all-ipam-pools"].members == {"198.18.0.0/16", "198.20.0.0/16"}
    assert full.sets["cali40masq-ipam-pools"].members == {"198.18.0.0/16"}
    assert full.sets["cali60masq-ipam-pools"].members == {"fd00:1::/48"}
    assert "create cali40masq-ipam-pools hash:net family inet" in full.ipset_pre
    planner = IptPlanner()
    planner.commit(full)
    s.take_dirty()
    s.apply(pool("198.18.0.0/16", nat=False))
    p = planner.plan_incremental(s, s.take_dirty())
    assert p.tables == {4: "", 6: ""} and p.ipset_post == ""
    assert p.ipset_pre == "del cali40masq-ipam-pools 198.18.0.0/16\n"
    planner.commit(p)
    s.apply(ev.IPPoolRemove("198.20.0.0/16"))
    p = planner.plan_incremental(s, s.take_dirty())
    assert p.ipset_pre == "del cali40all-ipam-pools 198.20.0.0/16\n"
    # The pool sets are never destroyed, even with no pool left: the nat rules name them.
    planner.commit(p)
    s.apply_all([ev.IPPoolRemove(c.cidr) for c in POOLS])
    p = planner.plan_incremental(s, s.take_dirty())
    assert "destroy" not in p.ipset_post and ips.is_ours("cali40all-ipam-pools")
    assert p.sets["cali40all-ipam-pools"].members == frozenset()

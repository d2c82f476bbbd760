"""The fake nft transport behaves as the real ones: the same transactions, the same table, the same refusals.

Each transaction a planner makes over a run of state changes (sets, deltas, policies, endpoints, an interface
change, host endpoints with doNotTrack and preDNAT stages, metadata, natOutgoing pools, floating IPs (address
maps, a concatenated key among them), out-of-order removals),
and a set of transactions nft must refuse, goes to a real transport (libnftables in-process, and a spawned
`nft`) inside a test namespace and to a `FakeNft`. After each, both listings (`nft -j list table inet calico`) must agree on
everything but handles and rule expressions: sets with types, flags and elements, map entries, chains with
their hooks, and every rule's comment in order. A refused transaction must be refused by both and change
neither. This is what lets tests/unit/test_nft_fake.py stand in for the kernel.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig, FailsafePort, FlowLogRules, MetadataTarget
from calico.dataplane.nftables import ops
from calico.dataplane.nftables.diff import Planner
from calico.dataplane.nftables.fake import FakeNft
from calico.dataplane.nftables.model import NftSet
from calico.dataplane.nftables.names import FIP_DNAT, FIP_HAIRPIN, FW_MAP, set_name
from calico.dataplane.nftables.transport import LibNftTransport, NftError, NftTransport, SpawnTransport
from calico.dataplane.state import DesiredState
from tests.helpers.netns import World

pytestmark = pytest.mark.heavy


@pytest.fixture(params=["libnftables", "nft-process"])
async def real(world: World, request: pytest.FixtureRequest) -> AsyncIterator[NftTransport]:
    transport: NftTransport = (LibNftTransport(world.host) if request.param == "libnftables"
                               else SpawnTransport(world.host))
    try:
        yield transport
    finally:
        transport.close()


def normalised(doc: dict[str, Any] | None) -> Any:
    """A listing without what differs between equal tables: handles, rule expressions, metainfo, order of
    sets / chains / elements (rule order inside a chain is kept)."""
    if doc is None:
        return None
    out: dict[str, Any] = {"set": {}, "map": {}, "chain": {}, "rules": {}, "counter": {}, "limit": {}}
    for item in doc["nftables"]:
        kind, body = next(iter(item.items()))
        if kind in ("metainfo", "table"):
            continue
        body = {k: v for k, v in body.items() if k not in ("handle", "expr")}
        if kind == "rule":
            out["rules"].setdefault(body["chain"], []).append(body.get("comment"))
            continue
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        out[kind][body["name"]] = body
    return out


P1, P2 = ev.PolicyID("default", "web", "ns"), ev.PolicyID("sec", "hp")


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id="r", **kw)  # type: ignore[arg-type]


def wep(n: int, iface: str | None = None, tiers: tuple[ev.TierInfo, ...] = (),
        profiles: tuple[str, ...] = ("prof",)) -> ev.WorkloadEndpointUpdate:
    return ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns", f"w{n}"), iface or f"cali{n:011d}", None,
                                     (f"198.18.1.{n}/32",), (f"fd00:c411::{n:x}/128",), tiers, profiles)


def nat_wep(n: int, *nats: tuple[str, str]) -> ev.WorkloadEndpointUpdate:
    """wep(n) with 1:1 NATs (external, internal)."""
    infos = [ev.NATInfo(e, i) for e, i in nats]
    return dataclasses.replace(wep(n, tiers=(TIER,)), ipv4_nats=tuple(x for x in infos if ":" not in x.external_ip),
                               ipv6_nats=tuple(x for x in infos if ":" in x.external_ip))


TIER = ev.TierInfo("default", "Deny", (P1,), (P1,))
HEP_TIER = ev.TierInfo("sec", "Deny", (P2,), (P2,))
HEP = ev.HostEndpointUpdate("h1", "eth1", (), (HEP_TIER,), (HEP_TIER,), (HEP_TIER,), (HEP_TIER,), ("prof",))

# Batches of events; each becomes one planned transaction (the first a whole-table replacement).
BATCHES: list[list[ev.DataplaneEvent]] = [
    [ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({"198.18.0.1/32", "198.18.0.2/32", "fd00:c411::9/128",
                                                        "198.18.8.0/24"})),
     ev.IPSetUpdate("np", ev.IPSetType.IP_PORT, frozenset({"198.18.1.1,tcp:80", "fd00:c411::1,udp:53"})),
     ev.PolicyUpdate(P1, (rule(src_ip_set_ids=("sel",)), rule(dst_named_port_set_ids=("np",), protocol="TCP")),
                     (rule(dst_nets=("198.18.0.0/16",)),)),
     ev.ProfileUpdate("prof", (rule(),), (rule("Pass"),)),
     wep(1, tiers=(TIER,)), wep(2, tiers=(TIER,)),
     ev.IPPoolUpdate("198.18.0.0/16", True, "Always", "Never", False, 26), ev.InSync()],
    [ev.IPPoolUpdate("fd00:1::/48", True, "Never", "Never", False, 122),  # natOutgoing pool sets change
     ev.IPPoolUpdate("198.20.0.0/16", False, "Never", "Never", False, 26)],
    [ev.IPPoolUpdate("198.18.0.0/16", False, "Always", "Never", False, 26), ev.IPPoolRemove("198.20.0.0/16")],
    [ev.IPSetDelta("sel", frozenset({"198.18.0.3/32"}), frozenset({"198.18.0.1/32"}))],
    [ev.IPSetUpdate("sel", ev.IPSetType.NET, frozenset({"198.18.0.0/16", "fd00:c411::/64"}))],  # prefixes
    [wep(3, tiers=(TIER,)), wep(2, iface="tap00000000002")],  # a new endpoint; one changes interface
    [ev.PolicyUpdate(P2, (rule(protocol="TCP", dst_ports=((22, 22), (8000, 8100))),), (rule(),)), HEP],
    [ev.WorkloadEndpointRemove(ev.WorkloadEndpointID("ns", "w1")), ev.IPSetRemove("np")],
    [ev.ProfileRemove("prof")],  # out of order: endpoints still name it (they fall back to a drop)
    [ev.HostEndpointRemove("h1"), ev.PolicyRemove(P2), ev.ProfileUpdate("prof", (), ())],
    [ev.IPSetRemove("sel"), ev.PolicyUpdate(P1, (rule(),), ())],
    [nat_wep(3, ("198.19.250.3", "198.18.1.3"), ("fd00:5::3", "fd00:c411::3"))],  # floating IPs: map elements
    [nat_wep(4, ("198.19.250.3", "198.18.1.4"), ("198.19.250.4", "198.18.1.4"))],  # w3 keeps .3
    [nat_wep(3, ("198.19.250.9", "198.18.1.3"))],  # w3 lets go of .3 (w4's now: a value changes) and of v6
]


def refusals() -> dict[str, list[ops.Op]]:
    """Transactions nft refuses against the table BATCHES leave, each after a harmless first operation."""
    s4 = set_name("other", 4)
    return {
        "missing chain": [ops.FlushChain("nochain")],
        "delete a chain still jumped to": [ops.FlushChain("wl-to-host"), ops.DeleteChain("wl-to-host")],
        "delete a set still used": [ops.AddSet(NftSet(s4, "ipv4_addr", True, frozenset())), ops.AddChain("x"),
                                    ops.AddRule("x", f"ip saddr @{s4} accept"), ops.DeleteSet(s4)],
        "missing element": [ops.AddSet(NftSet(s4, "ipv4_addr", True, frozenset({"198.18.0.1"}))),
                            ops.DeleteElements(s4, ("198.18.0.1", "198.18.0.2"))],
        "jump to nowhere": [ops.AddChain("x"), ops.AddRule("x", "jump nochain")],
        "set that is not there": [ops.AddChain("x"), ops.AddRule("x", "ip saddr @s4-nothing accept")],
        "set redeclared as another type": [ops.AddSet(NftSet(s4, "ipv4_addr", True, frozenset())),
                                           ops.AddSet(NftSet(s4, "ipv6_addr", True, frozenset()))],
        "overlapping interval": [ops.AddSet(NftSet(s4, "ipv4_addr", True, frozenset({"198.18.0.0/24"}))),
                                 ops.AddSet(NftSet(s4, "ipv4_addr", True, frozenset({"198.18.0.5"})))],
        "map key with another verdict": [ops.AddMapElements(FW_MAP, (("cali00000000003", "goto forward"),))],
        "map entry to a missing chain": [ops.AddMapElements(FW_MAP, (("cali9", "goto fw-cali9"),))],
        "missing map key": [ops.DeleteMapElements(FW_MAP, ("cali-none",))],
        "NAT map key with another address": [ops.AddMapElements(FIP_DNAT[4], (("198.19.250.9", "198.18.1.77"),))],
        "missing NAT map key": [ops.DeleteMapElements(FIP_HAIRPIN[4], ("198.18.1.77 . 198.18.1.77",))],
        "hook on a regular chain": [ops.AddChain("wl-to-host", "type filter hook input priority filter; policy accept;")],
        "counter that is not there": [ops.AddChain("x"), ops.AddRule("x", 'counter name "NIX/w" drop')],
        "delete a counter still counted into": [ops.DeleteCounter("UED/w")],
        "delete a missing counter": [ops.AddCounter("NIX/w"), ops.DeleteCounter("NIX/w"), ops.DeleteCounter("NIX/w")],
    }


async def test_fake_and_real_transports_agree(real: NftTransport) -> None:
    fake = FakeNft()
    assert await real.list_table() is None and await fake.list_table() is None
    config = DataplaneConfig(interface_prefixes=("cali", "tap"), metadata=MetadataTarget("198.18.0.1", 8775),
                             failsafe_inbound=(FailsafePort("tcp", 22), FailsafePort("udp", 68, "198.18.0.0/15")),
                             flow_logs=FlowLogRules(group=2, rate=100, burst=10, sample_percent=50))
    state = DesiredState(config)
    planner = Planner()
    for batch in BATCHES:
        state.apply_all(batch)
        plan = planner.plan(state, state.take_dirty())
        await real.run(plan.ops)
        await fake.run(plan.ops)
        planner.commit(plan)
        assert normalised(await real.list_table()) == normalised(await fake.list_table()), batch
        assert normalised(await real.list_counters()) == normalised(await fake.list_counters()), batch
    assert normalised(await real.list_table())["counter"].keys() == planner.applied.counters  # type: ignore[union-attr]
    before = normalised(await real.list_table())
    for what, txn in refusals().items():
        txn = [ops.AddChain("harmless"), *txn]
        with pytest.raises(NftError):
            await real.run(txn)
        with pytest.raises(NftError):
            await fake.run(txn)
        assert normalised(await real.list_table()) == before == normalised(await fake.list_table()), what
    # A counter declared again keeps its values; a whole-table replacement starts them where it is told.
    await real.run([ops.ReplaceTable(planner.applied, {"UED/w": (5, 500)})])  # type: ignore[arg-type]
    await fake.run([ops.ReplaceTable(planner.applied, {"UED/w": (5, 500)})])  # type: ignore[arg-type]
    for t in (real, fake):
        await t.run([ops.AddCounter("UED/w")])
        assert normalised(await t.list_counters())["counter"]["UED/w"]["packets"] == 5
    # What both accept again without a change: a set re-declared with an element it has, a map entry it has.
    kept = NftSet(set_name("kept", 4), "ipv4_addr", True, frozenset({"198.18.0.0/24"}))
    for txn in ([ops.AddSet(kept)], [ops.AddSet(kept), ops.AddMapElements(FW_MAP, (("cali00000000003",
                                                                                     "goto fw-cali00000000003"),))],
                [ops.AddMapElements(FIP_DNAT[4], (("198.19.250.9", "198.18.1.3"),))]):
        await real.run(txn)
        await fake.run(txn)
        assert normalised(await real.list_table()) == normalised(await fake.list_table())
    assert fake.table is not None and fake.table.sets[kept.name].elements == {"198.18.0.0/24"}

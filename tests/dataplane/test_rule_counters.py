"""Real packets counted per rule identity, read back from the kernel, on both backends (nftables; iptables in its
nf_tables and legacy flavours), and the same counts on a real calico-felix's Prometheus endpoint.

Known traffic between workload namespaces: UDP datagrams, each from a fresh source port (a new flow, so policy
sees every one of them) of a known size. a's egress is allowed by policy `out` (UDP only); b's ingress runs
policy `web` (rule 0 allows UDP 8080, rule 1 denies UDP 9090, anything else falls to the tier's default drop);
c has no ingress policy and a profile without ingress rules (profile fall-through); a also sends from an
address that is not its own (anti-spoofing), and d, a workload Felix does not know, sends too (fail closed).
Every count is exact: MLD reports, which workloads send on their own, are dropped inside their namespaces
before they reach the host, so nothing else is counted. Run under `flock /tmp/calico-netns.lock`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from calico.calculation import events as ev
from calico.dataplane import ruleids as rid
from calico.dataplane.counters import CounterTotals
from calico.dataplane.iptables import IptablesBackend
from calico.dataplane.nftables.backend import NftBackend
from calico.dataplane.nftables.transport import LibNftTransport
from calico.dataplane.state import DesiredState
from tests.dataplane.scenario import SPOOF, V4_BYTES, build, felix_in, scrape, send
from tests.dataplane.test_nft_policy import V4, endpoint, ingress_tier, pid, policy, rule
from tests.helpers.netns import World

pytestmark = pytest.mark.heavy

OUT = rid.policy_rule(pid("out"), False, 0, rid.Action.ALLOW).text
WEB_ALLOW = rid.policy_rule(pid("web"), True, 0, rid.Action.ALLOW).text
WEB_DENY = rid.policy_rule(pid("web"), True, 1, rid.Action.DENY).text
TIER_DROP = rid.tier_default("default", True, rid.Stage.WORKLOAD).text
FALLTHROUGH = rid.verdict(rid.Kind.NO_MATCH, True, rid.Stage.WORKLOAD).text
SPOOFED = rid.verdict(rid.Kind.SPOOFED, False, rid.Stage.WORKLOAD).text
UNKNOWN = rid.verdict(rid.Kind.UNKNOWN_IFACE, False, rid.Stage.WORKLOAD).text

@pytest.fixture
def wls(world: World) -> World:
    return build(world)


def events(world: World, web_rules: int = 2) -> list[ev.DataplaneEvent]:
    web = [rule(protocol="UDP", dst_ports=((8080, 8080),)), rule("Deny", protocol="UDP", dst_ports=((9090, 9090),)),
           rule("Deny", protocol="TCP")][:web_rules]
    return [
        ev.ProfileUpdate("no-ingress", inbound=(), outbound=()),
        policy("out", outbound=[rule(protocol="UDP")]),
        policy("web", inbound=web),
        endpoint(world, "a", tiers=[ev.TierInfo("default", "Deny", egress_policies=(pid("out"),))],
                 profiles=("no-ingress",)),
        endpoint(world, "b", tiers=[ingress_tier("web")], profiles=("no-ingress",)),
        endpoint(world, "c", profiles=("no-ingress",)),
    ]


def traffic(world: World, n: int) -> dict[str, int]:
    """Send the scenario's traffic (n datagrams per kind); the packets each identity must count."""
    send(world, "a", V4["b"], 8080, n)  # web rule 0: allow
    send(world, "a", V4["b"], 9090, n + 1)  # web rule 1: deny
    send(world, "a", V4["b"], 7070, n + 2)  # nothing in web matches: the tier's default drop
    send(world, "a", V4["c"], 8080, n + 3)  # c: no ingress policy, no profile ingress rule: fall-through
    send(world, "a", V4["b"], 8080, n + 4, src_ip=SPOOF)  # not a's address: anti-spoofing
    send(world, "d", V4["b"], 8080, n + 5)  # d's interface is unknown to Felix: fail closed
    return {OUT: 4 * n + 6, WEB_ALLOW: n, WEB_DENY: n + 1, TIER_DROP: n + 2, FALLTHROUGH: n + 3, SPOOFED: n + 4,
            UNKNOWN: n + 5}


def check(totals: dict[str, tuple[int, int]], want: dict[str, int]) -> None:
    got = {k: totals.get(k, (0, 0)) for k in want}
    assert got == {k: (p, p * V4_BYTES) for k, p in want.items()}


def plus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()}


# --- the backends, driven directly ---------------------------------------------------------------------------


@pytest.fixture(params=["nftables", "iptables-nft", "iptables-legacy"])
def firewall(world: World, request: pytest.FixtureRequest) -> Iterator[NftBackend | IptablesBackend]:
    if request.param == "nftables":
        b = NftBackend(LibNftTransport(world.host))
        yield b
        b.close()
        return
    flavour = request.param.split("-")[1]
    for tool in (f"iptables-{flavour}-restore", f"iptables-{flavour}-save", "ipset"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    yield IptablesBackend(world.host, flavour)


async def test_known_traffic_counts_exactly_per_identity(wls: World, firewall: NftBackend | IptablesBackend) -> None:
    state = DesiredState()
    state.apply_all([*events(wls), ev.InSync()])
    await firewall.apply(state)
    totals = CounterTotals()
    before = totals.update(await firewall.read_counters())
    assert set(before) >= {OUT, WEB_ALLOW, WEB_DENY, TIER_DROP, FALLTHROUGH, SPOOFED, UNKNOWN}
    assert all(v == (0, 0) for v in before.values()), {k: v for k, v in before.items() if v != (0, 0)}
    want = traffic(wls, 3)
    check(totals.update(await firewall.read_counters()), want)

    # The policy changes: its chain is rewritten. The counts go on (nft: named counters live on; iptables: the
    # rules restart from zero and the totals carry what the last read saw).
    state.apply_all(events(wls, web_rules=3))
    await firewall.apply(state)
    check(totals.update(await firewall.read_counters()), want)
    want = plus(want, traffic(wls, 2))
    check(totals.update(await firewall.read_counters()), want)

    # A whole-table rewrite (what a restarted agent's first apply or a repair does).
    firewall.planner.forget()
    await firewall.apply(state)
    if isinstance(firewall, NftBackend):  # the kernel itself carries the counts over
        check(CounterTotals().update(await firewall.read_counters()), want)
    check(totals.update(await firewall.read_counters()), want)


# --- a real calico-felix: the same counts on its Prometheus endpoint -------------------------------------------


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_a_real_felix_exports_the_counts(wls: World, backend: str) -> None:
    with felix_in(wls, backend):
        check_scrape(wls)


def check_scrape(felix: World) -> None:
    want = traffic(felix, 2)
    web0 = {"tier": "default", "direction": "ingress", "policy": "ns1/web", "rule": "0", "action": "allow"}
    deadline = time.monotonic() + 5  # a scrape may reuse a read up to SCRAPE_MAX_AGE old
    while True:
        m = scrape(felix)
        if m.get(("felix_policy_rule_packets_total", frozenset(web0.items()))) == want[WEB_ALLOW]:
            break
        assert time.monotonic() < deadline, sorted(m)
        time.sleep(0.3)

    def value(name: str, **labels: str) -> float:
        return m.get((name, frozenset(labels.items())), 0.0)

    rule_ = {"tier": "default", "direction": "ingress"}
    assert value("felix_policy_rule_packets_total", **rule_, policy="ns1/web", rule="0", action="allow") == want[WEB_ALLOW]
    assert value("felix_policy_rule_packets_total", **rule_, policy="ns1/web", rule="1", action="deny") == want[WEB_DENY]
    assert value("felix_policy_rule_bytes_total", **rule_, policy="ns1/web", rule="1", action="deny") == \
        want[WEB_DENY] * V4_BYTES
    assert value("felix_policy_rule_packets_total", tier="default", direction="egress", policy="ns1/out", rule="0",
                 action="allow") == want[OUT]
    assert value("felix_dropped_packets_total", reason="tier_default", tier="default", direction="ingress") == \
        want[TIER_DROP]
    assert value("felix_dropped_packets_total", reason="profile_fallthrough", tier="", direction="ingress") == \
        want[FALLTHROUGH]
    assert value("felix_dropped_packets_total", reason="anti_spoofing", tier="", direction="egress") == want[SPOOFED]
    assert value("felix_dropped_packets_total", reason="fail_closed", tier="", direction="egress") == want[UNKNOWN]
    assert not any("198.18." in v for (_, labels) in m for _, v in labels)  # never an address

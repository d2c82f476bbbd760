"""The facts both firewall renderers share: protocols, rule families, named-port members, the tier walk, and
that both backends spell the same walk (the same policies in the same order, failing closed alike)."""

from __future__ import annotations

import pytest

from calico.calculation import events as ev
from calico.dataplane import matches, protocols
from calico.dataplane.iptables import endpoints as ipt_endpoints
from calico.dataplane.iptables import rules as ipt_rules
from calico.dataplane.nftables import endpoints as nft_endpoints
from calico.dataplane.tiers import Policed, Step, StepKind, endpoint_steps, stage_steps
from calico.resources.fields import ICMP_PROTOCOLS, PORT_PROTOCOLS, PROTOCOL_NAMES


def rule(action: str = "Allow", **kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=action, rule_id="r", **kw)  # type: ignore[arg-type]


def test_protocol_table_covers_every_name_calico_accepts() -> None:
    assert set(protocols.PROTOCOL_NUMBERS) == set(PROTOCOL_NAMES.values())  # one name list: resources.fields
    assert {p for p in PORT_PROTOCOLS if isinstance(p, int)} == {protocols.number(p) for p in protocols.PORT_PROTOCOL_NAMES}
    for name, version in ICMP_PROTOCOLS.items():
        assert protocols.implied_version(name) == version
    assert protocols.PORT_PROTOCOL_NAMES == ("tcp", "udp", "sctp")


@pytest.mark.parametrize(("given", "kernel", "num"), [
    ("TCP", "tcp", 6), ("tcp", "tcp", 6), ("ICMPv6", "ipv6-icmp", 58), ("icmpv6", "ipv6-icmp", 58),
    ("UDPLite", "udplite", 136), ("SCTP", "sctp", 132), (17, "17", 17), ("58", "58", 58),
])
def test_kernel_names_and_numbers(given: str | int, kernel: str, num: int) -> None:
    assert protocols.kernel_name(given) == kernel and protocols.number(given) == num


def test_unknown_protocols_are_errors() -> None:
    for bad in ("nonsense", 256, -1, True):
        with pytest.raises(ValueError):
            protocols.kernel_name(bad)  # type: ignore[arg-type]
    assert protocols.port_protocol(" UDP ") == "udp" and protocols.port_protocol("icmp") is None


def test_rule_families() -> None:
    assert matches.families(rule()) == {4, 6} and not matches.family_specific(rule())
    assert matches.families(rule(protocol="ICMP")) == {4}
    assert matches.families(rule(protocol=58)) == {6}
    assert matches.families(rule(src_nets=("198.18.0.0/16",), dst_nets=("fd00:1::/64",))) == set()
    assert matches.families(rule(ip_version=6, protocol="ICMP")) == set()
    assert matches.family_specific(rule(src_ip_set_ids=("s",))) and matches.family_specific(rule(icmp_type=8))
    assert matches.has_ports(rule(not_dst_named_port_set_ids=("n",))) and not matches.has_ports(rule())


def test_named_port_members() -> None:
    np = matches.named_port("fd00::0001,TCP:80", 6)
    assert np is not None and (str(np.ip), np.protocol, np.port) == ("fd00::1", "tcp", 80)
    for bad in ("fd00::1,tcp:80", "198.18.0.1,icmp:1", "198.18.0.1,tcp:70000", "junk", "198.18.0.1:80"):
        assert matches.named_port(bad, 4) is None, bad


P1, P2, P3 = ev.PolicyID("t1", "a"), ev.PolicyID("t2", "b"), ev.PolicyID("t2", "gone")


def test_endpoint_walk_order_and_fail_closed() -> None:
    tiers = (ev.TierInfo("t1", "Pass", (P1,)), ev.TierInfo("t0", "Deny", (), (P1,)), ev.TierInfo("t2", "Deny", (P2, P3)))
    steps = endpoint_steps(Policed(tiers, ("prof", "missing", "never")), True, {P1, P2}, {"prof"})
    assert [(s.kind, s.target) for s in steps] == [
        (StepKind.POLICY, P1),  # t1: defaultAction Pass, so no tier drop
        (StepKind.NEXT_TIER, None),  # t0 applies only to egress: skipped
        (StepKind.POLICY, P2), (StepKind.MISSING_POLICY, P3), (StepKind.TIER_DROP, "t2"),
        (StepKind.PROFILE, "prof"), (StepKind.MISSING_PROFILE, "missing"),  # the walk ends at a missing profile
        (StepKind.DROP, None),
    ]
    assert endpoint_steps(Policed((), ()), True, set(), set()) == [Step(StepKind.DROP)]


def test_stage_walk_has_no_drops_of_its_own() -> None:
    tiers = (ev.TierInfo("t1", "Deny", (P1,)), ev.TierInfo("t2", "Deny", (), (P2,)))
    assert [s.kind for s in stage_steps(tiers, True, {P1})] == [StepKind.STAGE_TIER, StepKind.POLICY, StepKind.RETURN]
    assert [s.kind for s in stage_steps(tiers, False, set())] == [
        StepKind.STAGE_TIER, StepKind.MISSING_POLICY, StepKind.RETURN]


def test_both_backends_spell_the_same_walk() -> None:
    """Each backend's policy group names the same policy and profile chains, in the same order, with a drop
    wherever the other has one."""
    tier = ev.TierInfo("t2", "Deny", (P2, P3))
    wep = ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns", "w"), "cali1", None, ("198.18.0.1/32",), (),
                                    (ev.TierInfo("t1", "Pass", (P1,)), tier), ("prof",))
    nft_group = nft_endpoints.endpoint_chains(wep, {P1, P2}, {"prof"})[3]
    ipt_group = ipt_endpoints.endpoint_chains(wep, 4, {P1, P2}, {"prof"})[3]

    def shape(lines: list[str]) -> list[str]:
        """Drops and jumps to policy / profile chains, in order, in backend-neutral spelling."""
        out = []
        for ln in lines:
            words = ln.split()
            if "drop" in words or "DROP" in words:
                out.append("drop")
                continue
            verb = "jump" if "jump" in words else "-j" if "-j" in words else None
            target = words[words.index(verb) + 1].removeprefix("cali-") if verb else ""
            if target.startswith(("pi-", "po-", "pri-", "pro-")):
                out.append(target)
        return out

    nft = shape(list(nft_group.rules))
    assert nft == ["pi-t1/a", "pi-t2/b", "drop", "drop", "pri-prof", "drop"]
    assert shape([f"{r.match} {r.target}" for r in ipt_group.rules]) == nft


def test_iptables_compares_protocols_by_number() -> None:
    def lines(r: ev.RenderedRule) -> list[str]:
        return [f"{x.match} {x.target}".strip() for x in ipt_rules.render_rule(r, 4, "cali-pi-x")[0]]

    assert lines(rule("Deny", protocol=6, not_protocol="TCP")) == []  # TCP and not TCP: never matches
    assert [ln.split()[1] for ln in lines(rule("Deny", not_protocol=17, dst_ports=((53, 53),)))] == ["tcp", "sctp"]

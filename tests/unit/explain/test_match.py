"""One packet against one rendered rule (pure): the kernel's semantics as both renderers write them."""

from __future__ import annotations

from collections.abc import Iterable

from calico.calculation import events as ev
from calico.explain.flow import Flow
from calico.explain.match import mismatches


class Sets:
    def __init__(self, **sets: list[str]) -> None:
        self.sets = sets

    def members(self, set_id: str) -> Iterable[str] | None:
        return self.sets.get(set_id)

    def describe(self, set_id: str) -> str:
        return f"set {set_id}"


def r(**kw: object) -> ev.RenderedRule:
    return ev.RenderedRule(action=str(kw.pop("action", "Allow")), rule_id="x", **kw)  # type: ignore[arg-type]


TCP4 = Flow("198.18.0.1", "198.18.0.2", 6, 40000, 8080)
TCP6 = Flow("fd00:1::1", "fd00:1::2", 6, 40000, 8080)
PING4 = Flow("198.18.0.1", "198.18.0.2", 1, icmp_type=8, icmp_code=0)
NONE = Sets()


def test_families_follow_version_icmp_and_positive_nets() -> None:
    assert mismatches(TCP4, r(ip_version=6), NONE) == ["the rule matches only IPv6"]
    assert mismatches(TCP6, r(protocol="ICMP"), NONE) == ["the rule matches only IPv4"]
    assert mismatches(TCP6, r(src_nets=("198.18.0.0/16",)), NONE)
    # a negated net of the other family is left out of this family's rule: it does not stop a match
    assert mismatches(TCP6, r(not_src_nets=("198.18.0.0/16",)), NONE) == []
    assert mismatches(TCP4, r(not_src_nets=("198.18.0.0/16",)), NONE) == [
        "source notNets: 198.18.0.1 is in 198.18.0.0/16"]


def test_protocols_and_icmp() -> None:
    assert mismatches(TCP4, r(protocol="TCP"), NONE) == []
    assert mismatches(TCP4, r(protocol=17), NONE) == ["protocol is not 17"]
    assert mismatches(TCP4, r(not_protocol="tcp"), NONE) == ["notProtocol tcp"]
    assert mismatches(PING4, r(protocol="ICMP", icmp_type=8, icmp_code=0), NONE) == []
    assert mismatches(PING4, r(protocol="ICMP", icmp_type=8, icmp_code=1), NONE) == ["icmp: not type 8 code 1"]
    assert mismatches(PING4, r(protocol="ICMP", not_icmp_type=8), NONE) == ["notICMP: the packet is of that type"]
    assert mismatches(PING4, r(protocol="ICMP", not_icmp_type=8, not_icmp_code=3), NONE) == []
    # an ICMP header match, even negated, needs an ICMP packet (nft: `icmp type != 8` implies `l4proto icmp`)
    assert mismatches(TCP4, r(not_icmp_type=8), NONE) == ["notICMP: not an ICMP packet"]


def test_ports_numeric_named_and_negated() -> None:
    named = Sets(np=["198.18.0.2,tcp:8080"], other=["198.18.0.9,tcp:8080"])
    assert mismatches(TCP4, r(dst_ports=((8000, 8100),)), NONE) == []
    assert mismatches(TCP4, r(dst_ports=((80, 80),), dst_named_port_set_ids=("np",)), named) == []  # OR'ed
    assert mismatches(TCP4, r(dst_named_port_set_ids=("other",)), named) == [
        "destination ports: 8080 is not in set other"]
    assert mismatches(TCP4, r(not_dst_ports=((8080, 8080),)), NONE) == ["destination notPorts: 8080 is in 8080"]
    assert mismatches(TCP4, r(not_dst_named_port_set_ids=("np",)), named) == [
        "destination notPorts: 8080 is in set np"]
    assert mismatches(PING4, r(dst_ports=((1, 65535),)), NONE) == ["ports: the protocol carries no ports"]
    udp_flow = Flow("198.18.0.1", "198.18.0.2", 17, 40000, 8080)
    assert mismatches(udp_flow, r(dst_named_port_set_ids=("np",)), named)  # named port is tcp:8080


def test_selector_sets() -> None:
    sets = Sets(s1=["198.18.0.0/30"], s2=["fd00:1::/64"])
    assert mismatches(TCP4, r(src_ip_set_ids=("s1",), dst_ip_set_ids=("s1",)), sets) == []
    assert mismatches(TCP4, r(not_dst_ip_set_ids=("s1",)), sets) == [
        "destination (negated): 198.18.0.2 is in set s1"]
    assert mismatches(TCP4, r(src_ip_set_ids=("s2",)), sets) == ["source: 198.18.0.1 is not in set s2"]
    assert mismatches(TCP4, r(src_ip_set_ids=("gone",)), sets) == ["source: 198.18.0.1 is not in set gone"]

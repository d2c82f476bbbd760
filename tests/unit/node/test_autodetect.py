"""Autodetection methods over interface snapshots: Calico's choice for each method (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from calico.node.autodetect import (
    CanReach,
    CidrMatch,
    FirstFound,
    HostInterface,
    InterfaceMatch,
    MethodError,
    NoAddress,
    SkipInterface,
    is_global_unicast,
    parse_method,
    select,
)


def iface(name: str, index: int, *addrs: str) -> HostInterface:
    return HostInterface(name, index, tuple(ipaddress.ip_interface(a) for a in addrs))


HOST = [
    iface("lo", 1, "127.0.0.1/8", "::1/128"),
    iface("eth0", 2, "198.19.1.3/24", "fe80::1/64", "fd00:1:2::3/64"),
    iface("eth1", 3, "198.19.2.3/24", "fd00:1:3::3/64"),
    iface("docker0", 4, "198.18.99.1/24"),
    iface("cali1234567890a", 5, "169.254.1.1/32"),
    iface("vxlan.calico", 6, "198.18.5.1/32"),
    iface("dhcp.calico", 7, "198.18.40.1/24", "fd00:40::1/64"),  # calico-dhcp-agent's gateway addresses
]


def pick(method: str, version: int = 4, interfaces: list[HostInterface] = HOST, source: str | None = None) -> str:
    src = ipaddress.ip_address(source) if source else None
    return str(select(parse_method(method), interfaces, version, src))


def test_first_found_scans_from_the_highest_index_and_skips_calicos_exclusions() -> None:
    # docker0, cali*, vxlan.calico, dhcp.calico are excluded; of eth0/eth1 Calico scans the higher index first.
    assert pick("first-found") == "198.19.2.3/24"
    assert pick("") == "198.19.2.3/24"  # unset is first-found
    assert pick("first-found", 6) == "fd00:1:3::3/64"


def test_first_found_needs_global_unicast() -> None:
    only_local = [iface("eth0", 2, "169.254.3.3/16", "fe80::3/64"), iface("lo", 1, "127.0.0.1/8")]
    with pytest.raises(NoAddress, match=r"no IPv4 address .* fits first-found"):
        pick("first-found", 4, only_local)
    with pytest.raises(NoAddress, match=r"IPv6"):
        pick("first-found", 6, only_local)


def test_the_detected_address_keeps_its_host_bits_and_prefix() -> None:
    found = select(FirstFound(), [iface("ens3", 2, "10.0.0.17/20")], 4)
    assert found.interface == "ens3" and str(found) == "10.0.0.17/20"


def test_interface_regex_is_searched_not_anchored_and_ignores_the_exclusion_list() -> None:
    assert pick("interface=eth0") == "198.19.1.3/24"
    assert pick("interface=th0") == "198.19.1.3/24"  # Go regexps search, as Calico does
    assert pick("interface=docker.*") == "198.18.99.1/24"  # an explicit choice overrides the default exclusions
    assert pick("interface=nope, eth0") == "198.19.1.3/24"  # a list; spaces around commas ignored
    with pytest.raises(NoAddress, match=r"interface=nope"):
        pick("interface=nope")


def test_skip_interface_adds_to_the_default_exclusions() -> None:
    assert pick("skip-interface=eth1") == "198.19.1.3/24"
    with pytest.raises(NoAddress):
        pick("skip-interface=eth.*")  # docker0 stays excluded by default


def test_cidr_picks_the_first_address_inside_one_of_the_networks() -> None:
    assert pick("cidr=198.19.1.0/24") == "198.19.1.3/24"
    assert pick("cidr=10.0.0.0/8,198.19.0.0/16") == "198.19.2.3/24"
    assert pick("cidr=fd00:1:2::/48", 6) == "fd00:1:2::3/64"
    assert pick("cidr=198.18.99.0/24") == "198.18.99.1/24"  # cidr does not apply the exclusion list
    with pytest.raises(NoAddress):
        pick("cidr=10.0.0.0/8")


def test_can_reach_takes_the_route_source_and_the_prefix_of_its_interface() -> None:
    assert pick("can-reach=198.19.2.254", source="198.19.2.3") == "198.19.2.3/24"
    with pytest.raises(NoAddress, match=r"is on no local interface"):
        pick("can-reach=8.8.8.8", source="203.0.113.9")
    with pytest.raises(NoAddress, match=r"no IPv4 route"):
        select(CanReach("8.8.8.8"), HOST, 4, None)


def test_parse_method() -> None:
    assert parse_method("interface=eth0,ens.*") == InterfaceMatch(parse_method("interface=eth0,ens.*").patterns)
    assert isinstance(parse_method("skip-interface=eth1"), SkipInterface)
    assert parse_method("can-reach=www.example.com") == CanReach("www.example.com")
    assert parse_method("cidr=198.19.1.7/24") == CidrMatch((ipaddress.ip_network("198.19.1.0/24"),))
    assert parse_method(" first-found ").describe() == "first-found"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interface=", "unknown method"),
        ("interface=(eth", "invalid interface regex '\\(eth'"),
        ("interface=eth0,,eth1", "empty regex"),
        ("cidr=10.0.0.0/33", "invalid CIDR '10.0.0.0/33'"),
        ("kubernetes-internal-ip", "needs a Kubernetes Node"),
        ("last-found", "unknown method 'last-found'"),
        ("bogus=1", "unknown method 'bogus'"),
    ],
)
def test_bad_methods_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MethodError, match=message):
        parse_method(text)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [("10.1.2.3", True), ("198.18.0.1", True), ("fd00:1::1", True), ("2001:db8::1", True),
     ("127.0.0.1", False), ("169.254.1.1", False), ("fe80::1", False), ("224.0.0.1", False), ("0.0.0.0", False),
     ("255.255.255.255", False), ("::", False), ("::1", False), ("ff02::1", False)],
)
def test_global_unicast_as_go_defines_it(ip: str, expected: bool) -> None:
    assert is_global_unicast(ipaddress.ip_address(ip)) is expected

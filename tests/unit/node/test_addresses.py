"""Which address a node registers per family, for each IP/IP6 setting (Calico's startup rules), over a fake host."""

from __future__ import annotations

import ipaddress
import logging

import pytest

from calico.node.addresses import AddressError, resolve_family
from calico.node.autodetect import HostInterface
from calico.node.hostnet import StaticHostNetwork
from calico.node.settings import NodeSettings

NET = StaticHostNetwork(
    [
        HostInterface("lo", 1, (ipaddress.ip_interface("127.0.0.1/8"),)),
        HostInterface("eth0", 2, (ipaddress.ip_interface("198.19.1.3/24"), ipaddress.ip_interface("fd00:1::3/64"))),
    ],
    routes={"198.19.1.254": "198.19.1.3", "fd00:1::fe": "fd00:1::3", "203.0.113.1": "203.0.113.7"},
)
EMPTY = StaticHostNetwork([HostInterface("lo", 1, (ipaddress.ip_interface("127.0.0.1/8"),))])


def family(version: int, **env: str) -> object:
    s = NodeSettings.from_env({"NODENAME": "h", **env})
    return s.ipv4 if version == 4 else s.ipv6


async def resolve(version: int, existing: str | None, net: StaticHostNetwork = NET, **env: str) -> str | None:
    return await resolve_family(family(version, **env), existing, net)  # type: ignore[arg-type]


async def test_ipv4_unset_autodetects_only_when_the_node_has_no_address() -> None:
    assert await resolve(4, None) == "198.19.1.3/24"
    assert await resolve(4, "198.19.7.7/24") == "198.19.7.7/24"  # kept, as Calico keeps it


async def test_autodetect_always_detects_and_updates() -> None:
    assert await resolve(4, "198.19.7.7/24", IP="autodetect") == "198.19.1.3/24"
    assert await resolve(6, None, IP6="autodetect") == "fd00:1::3/64"


async def test_ipv6_is_detected_only_when_asked() -> None:
    assert await resolve(6, None) is None
    assert await resolve(6, "fd00:9::9/64") == "fd00:9::9/64"


async def test_none_keeps_what_the_node_has() -> None:
    assert await resolve(4, None, IP="none") is None
    assert await resolve(4, "198.19.7.7/24", IP="none") == "198.19.7.7/24"


async def test_given_address_takes_the_local_subnet_or_is_a_host_route(caplog: pytest.LogCaptureFixture) -> None:
    assert await resolve(4, None, IP="198.19.1.3") == "198.19.1.3/24"
    assert await resolve(4, "198.19.1.3/24", IP="198.19.1.3/16") == "198.19.1.3/16"
    with caplog.at_level(logging.WARNING):
        assert await resolve(4, None, IP="198.19.9.9") == "198.19.9.9/32"
        assert await resolve(6, None, IP6="fd00:9::9") == "fd00:9::9/128"
    assert "no local interface holds 198.19.9.9" in caplog.text


async def test_can_reach_uses_the_route_source() -> None:
    assert await resolve(4, None, IP="autodetect", IP_AUTODETECTION_METHOD="can-reach=198.19.1.254") == "198.19.1.3/24"
    assert await resolve(6, None, IP6="autodetect", IP6_AUTODETECTION_METHOD="can-reach=fd00:1::fe") == "fd00:1::3/64"
    with pytest.raises(AddressError, match=r"cannot reach 192.0.2.1 over IPv4"):
        await resolve(4, None, IP="autodetect", IP_AUTODETECTION_METHOD="can-reach=192.0.2.1")
    with pytest.raises(AddressError, match=r"203.0.113.7 towards 203.0.113.1 is on no local interface"):
        await resolve(4, None, IP="autodetect", IP_AUTODETECTION_METHOD="can-reach=203.0.113.1")


async def test_failed_detection_keeps_an_existing_address_and_fails_without_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(AddressError, match=r"IP: could not autodetect an IPv4 address .*first-found"):
        await resolve(4, None, EMPTY)
    with pytest.raises(AddressError, match=r"IP6: could not autodetect an IPv6 address"):
        await resolve(6, None, EMPTY, IP6="autodetect")
    with caplog.at_level(logging.WARNING):
        assert await resolve(4, "198.19.1.3/24", EMPTY, IP="autodetect") == "198.19.1.3/24"
    assert "keeping the Node's address 198.19.1.3/24" in caplog.text
    assert "not assigned to any interface of this host" in caplog.text

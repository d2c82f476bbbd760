"""The agent's own bridge through real netlink, in a namespace made here: created up, addresses exact, each
without a prefix route (IPv6 also without DAD), the kernel's link-local left alone, someone else's device of
that name refused, removed. Run under `flock /tmp/calico-netns.lock`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from calico.dhcp.interface import InterfaceError, NetlinkGatewayInterface
from tests.helpers.netns import new_run_id

NAME = "dhcp.calico"


def ip_json(ns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-n", ns, "-j", *args], capture_output=True, text=True, timeout=10, check=True)
    return json.loads(out.stdout or "[]")


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    ns = f"cdi-{new_run_id()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)


def addresses(ns: str) -> dict[str, list[str]]:
    [link] = ip_json(ns, "addr", "show", "dev", NAME)
    return {f"{a['local']}/{a['prefixlen']}": sorted(k for k in ("noprefixroute", "nodad") if a.get(k))
            for a in link["addr_info"] if a.get("scope") == "global"}


async def test_bridge_holds_exactly_the_gateway_addresses_without_prefix_routes(netns: str):
    iface = NetlinkGatewayInterface(NAME, netns)
    await iface.ensure(["198.18.50.1/24", "fd00:50::1/64"])
    [link] = ip_json(netns, "-d", "link", "show", "dev", NAME)
    assert link["linkinfo"]["info_kind"] == "bridge" and "UP" in link["flags"]
    assert addresses(netns) == {"198.18.50.1/24": ["noprefixroute"], "fd00:50::1/64": ["nodad", "noprefixroute"]}
    # Only the local routes exist: no 198.18.50.0/24 or fd00:50::/64 route steals VM traffic from Felix's /32s.
    assert ip_json(netns, "-4", "route", "show") == []
    assert [r["dst"] for r in ip_json(netns, "-6", "route", "show")] == ["fe80::/64"]
    local = {(r["type"], r["dst"]) for r in ip_json(netns, "-4", "route", "show", "table", "local", "dev", NAME)}
    assert local == {("local", "198.18.50.1"), ("broadcast", "198.18.50.255")}

    await iface.ensure(["198.18.51.1/24", "fd00:50::1/64"])  # one gone, one new, one kept
    assert set(addresses(netns)) == {"198.18.51.1/24", "fd00:50::1/64"}
    [link] = ip_json(netns, "addr", "show", "dev", NAME)
    assert any(a["local"].startswith("fe80::") for a in link["addr_info"])  # the kernel's own, left alone

    await iface.remove()
    assert not [link for link in ip_json(netns, "link", "show") if link["ifname"] == NAME]
    await iface.remove()  # already gone: nothing to do


async def test_a_device_of_that_name_that_is_not_a_bridge_is_refused(netns: str):
    subprocess.run(["ip", "-n", netns, "link", "add", NAME, "type", "veth", "peer", "name", "other"], check=True)
    with pytest.raises(InterfaceError, match="exists and is a veth device"):
        await NetlinkGatewayInterface(NAME, netns).ensure(["198.18.50.1/24"])
    [link] = ip_json(netns, "addr", "show", "dev", NAME)
    assert not [a for a in link["addr_info"] if a.get("scope") == "global"]  # untouched

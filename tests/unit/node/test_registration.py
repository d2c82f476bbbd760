"""NodeRegistrar against a real (embedded) datastore and a fake host: create, update, keep, conflicts, CAS."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from calico.calculation.nodes import vtep_mac
from calico.datastore.embedded import EmbeddedKV
from calico.datastore.store import ResourceStore
from calico.ipam import IPAMClient
from calico.node.autodetect import HostInterface
from calico.node.hostnet import StaticHostNetwork
from calico.node.registration import NodeRegistrar, RegistrationError
from calico.node.settings import NodeSettings
from calico.resources import Node, Resource, parse_resource


def host(*addrs: str) -> StaticHostNetwork:
    return StaticHostNetwork([HostInterface("eth0", 2, tuple(ipaddress.ip_interface(a) for a in addrs))])


def settings(tmp_path: Path, **env: str) -> NodeSettings:
    return NodeSettings.from_env({"NODENAME": "h1", "CALICO_NODENAME_FILE": str(tmp_path / "nodename"), **env})


def resource(kind: str, name: str, spec: dict[str, object], labels: dict[str, str] | None = None) -> Resource:
    meta: dict[str, object] = {"name": name}
    if labels:
        meta["labels"] = labels
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ResourceStore]:
    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    try:
        yield ResourceStore(kv)
    finally:
        await kv.close()


async def get_node(store: ResourceStore, name: str = "h1") -> Node:
    return await store.get("Node", name)  # type: ignore[return-value]


async def test_startup_creates_the_node_and_writes_the_name_file(store: ResourceStore, tmp_path: Path) -> None:
    reg = NodeRegistrar(settings(tmp_path, AS="65001"), store, host("198.19.1.3/24"))
    await reg.register()
    n = await get_node(store)
    assert n.spec.bgp is not None
    assert (n.spec.bgp.ipv4Address, n.spec.bgp.ipv6Address, n.spec.bgp.asNumber) == ("198.19.1.3/24", None, 65001)
    assert (tmp_path / "nodename").read_text() == "h1"


async def test_an_existing_node_is_updated_and_keeps_its_labels(
    store: ResourceStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.create(resource("Node", "h1", {"bgp": {"ipv4Address": "198.19.7.7/24", "asNumber": 65010}},
                                labels={"rack": "r1"}))
    with caplog.at_level(logging.INFO):
        await NodeRegistrar(settings(tmp_path, IP="autodetect"), store, host("198.19.1.3/24")).register()
    n = await get_node(store)
    assert n.metadata.labels == {"rack": "r1"}
    assert n.spec.bgp is not None and (n.spec.bgp.ipv4Address, n.spec.bgp.asNumber) == ("198.19.1.3/24", 65010)
    assert "updated Node h1: ipv4Address=198.19.1.3/24 asNumber=65010 (was ipv4Address=198.19.7.7/24" in caplog.text


async def test_an_unchanged_node_is_not_written(store: ResourceStore, tmp_path: Path) -> None:
    reg = NodeRegistrar(settings(tmp_path, IP="autodetect"), store, host("198.19.1.3/24"))
    await reg.register()
    before = (await get_node(store)).metadata.resourceVersion
    await reg.register()
    await reg.refresh()
    assert (await get_node(store)).metadata.resourceVersion == before


async def test_refresh_follows_an_address_change(store: ResourceStore, tmp_path: Path) -> None:
    net = host("198.19.1.3/24")
    reg = NodeRegistrar(settings(tmp_path, IP="autodetect", IP6="autodetect"), store, net)
    with pytest.raises(RegistrationError, match=r"IP6: could not autodetect an IPv6 address"):
        await reg.register()
    net._interfaces = [HostInterface("eth0", 2, (ipaddress.ip_interface("198.19.1.3/24"),
                                                 ipaddress.ip_interface("fd00:1::3/64")))]
    await reg.register()
    net._interfaces = [HostInterface("eth0", 2, (ipaddress.ip_interface("198.19.2.3/24"),
                                                 ipaddress.ip_interface("fd00:1::3/64")))]
    await reg.refresh()
    n = await get_node(store)
    assert n.spec.bgp is not None and (n.spec.bgp.ipv4Address, n.spec.bgp.ipv6Address) == ("198.19.2.3/24",
                                                                                           "fd00:1::3/64")


async def test_a_duplicate_address_refuses_startup_and_is_never_taken_on_refresh(
    store: ResourceStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.create(resource("Node", "h2", {"bgp": {"ipv4Address": "198.19.1.3/24"}}))
    with pytest.raises(RegistrationError, match=r"Node 'h2' is already using the IPv4 address 198.19.1.3"):
        await NodeRegistrar(settings(tmp_path), store, host("198.19.1.3/24")).register()
    assert [n.metadata.name for n in await store.list("Node")] == ["h2"]  # nothing written
    # the check can be turned off, as in Calico
    await NodeRegistrar(settings(tmp_path, DISABLE_NODE_IP_CHECK="true"), store, host("198.19.1.3/24")).register()
    # on refresh a new conflicting address is logged and the registered one kept
    net = host("198.19.1.4/24")
    reg = NodeRegistrar(settings(tmp_path, IP="autodetect"), store, net)
    await reg.register()
    net._interfaces = [HostInterface("eth0", 2, (ipaddress.ip_interface("198.19.1.3/24"),))]
    with caplog.at_level(logging.ERROR):
        assert await reg.refresh() is None
    assert "keeping the registered Node h1 as it is: address conflict" in caplog.text
    n = await get_node(store)
    assert n.spec.bgp is not None and n.spec.bgp.ipv4Address == "198.19.1.4/24"


async def test_no_address_at_all_is_fatal_unless_policy_only(store: ResourceStore, tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match=r"no IPv4 or IPv6 address .*CALICO_NETWORKING_BACKEND=bird"):
        await NodeRegistrar(settings(tmp_path, IP="none"), store, host()).register()
    await NodeRegistrar(settings(tmp_path, CALICO_NETWORKING_BACKEND="none", AS="65001"), store, host()).register()
    assert (await get_node(store)).spec.bgp is None  # policy only: no BGP details written


async def test_a_node_name_calico_refuses_is_a_clear_error(store: ResourceStore, tmp_path: Path) -> None:
    reg = NodeRegistrar(NodeSettings.from_env({"NODENAME": "Bad_Name", "CALICO_NODENAME_FILE": "none"}), store,
                        host("198.19.1.3/24"))
    with pytest.raises(RegistrationError, match=r"Node Bad_Name would be invalid: .*metadata.name"):
        await reg.register()


class RacingStore(ResourceStore):
    """Someone else writes the Node between our read and our write, `races` times."""

    def __init__(self, inner: ResourceStore, races: int) -> None:
        super().__init__(inner.kv)
        self.races = races

    async def update(self, res: Resource) -> Resource:
        if self.races:
            self.races -= 1
            current = await self.get("Node", res.metadata.name)
            await super().update(current.model_copy(update={"metadata": current.metadata.model_copy(
                update={"labels": {"touched": str(self.races)}})}))
        return await super().update(res)


async def test_a_concurrent_change_is_retried_and_its_labels_survive(store: ResourceStore, tmp_path: Path) -> None:
    await store.create(resource("Node", "h1", {"bgp": {"ipv4Address": "198.19.7.7/24"}}))
    racing = RacingStore(store, races=2)
    await NodeRegistrar(settings(tmp_path, IP="autodetect"), racing, host("198.19.1.3/24")).register()
    n = await get_node(store)
    assert n.metadata.labels == {"touched": "0"}
    assert n.spec.bgp is not None and n.spec.bgp.ipv4Address == "198.19.1.3/24"
    always_racing = RacingStore(store, races=99)
    with pytest.raises(RegistrationError, match=r"still changing after 5 attempts"):
        await NodeRegistrar(settings(tmp_path, IP="198.19.1.9/24"), always_racing, host("198.19.1.9/24")).register()


async def test_vxlan_tunnel_addresses_follow_the_pools(store: ResourceStore, tmp_path: Path) -> None:
    """A VXLAN pool gives the node a tunnel address from its own block (and Calico's derived MAC); a refresh keeps
    it; the pool turning VXLAN off takes it back and releases it in IPAM."""
    await store.create(resource("IPPool", "p4", {"cidr": "198.18.0.0/16", "vxlanMode": "Always"}))
    await store.create(resource("IPPool", "p6", {"cidr": "fd00:1::/48", "vxlanMode": "CrossSubnet"}))
    await store.create(resource("IPPool", "plain", {"cidr": "198.17.0.0/16"}))  # not VXLAN: never used
    reg = NodeRegistrar(settings(tmp_path), store, host("198.19.1.3/24"))
    await reg.register()
    n = await get_node(store)
    assert n.spec.ipv4VXLANTunnelAddr is not None and n.spec.ipv6VXLANTunnelAddr is not None
    assert ipaddress.ip_address(n.spec.ipv4VXLANTunnelAddr) in ipaddress.ip_network("198.18.0.0/16")
    assert n.spec.vxlanTunnelMACAddr == vtep_mac("h1", 4) and n.spec.vxlanTunnelMACAddrV6 == vtep_mac("h1", 6)
    ipam = IPAMClient(store.kv)
    assert [str(a) for a in await ipam.ips_by_handle("vxlan-tunnel-addr-h1")] == [n.spec.ipv4VXLANTunnelAddr]
    owner = await ipam.assignment(n.spec.ipv4VXLANTunnelAddr)
    assert owner is not None and owner.block_affinity == "host:h1"  # from this node's own block
    await reg.refresh()
    again = await get_node(store)
    assert again.spec.ipv4VXLANTunnelAddr == n.spec.ipv4VXLANTunnelAddr
    assert again.metadata.resourceVersion == n.metadata.resourceVersion  # nothing to write: not written
    p4 = await store.get("IPPool", "p4")
    p4.spec.vxlanMode = "Never"  # type: ignore[attr-defined]
    await store.update(p4)
    await reg.refresh()
    gone = await get_node(store)
    assert gone.spec.ipv4VXLANTunnelAddr is None and gone.spec.vxlanTunnelMACAddr is None
    assert gone.spec.ipv6VXLANTunnelAddr == n.spec.ipv6VXLANTunnelAddr
    assert await ipam.ips_by_handle("vxlan-tunnel-addr-h1") == []


async def test_a_tunnel_address_allocated_but_never_written_is_reused(store: ResourceStore, tmp_path: Path) -> None:
    await store.create(resource("IPPool", "p4", {"cidr": "198.18.0.0/16", "vxlanMode": "Always"}))
    await NodeRegistrar(settings(tmp_path), store, host("198.19.1.3/24")).register()
    first = (await get_node(store)).spec.ipv4VXLANTunnelAddr
    node = await get_node(store)
    node.spec.ipv4VXLANTunnelAddr = None  # as if calico-node died between IPAM and the Node write
    await store.update(node)
    await NodeRegistrar(settings(tmp_path), store, host("198.19.1.3/24")).register()
    assert (await get_node(store)).spec.ipv4VXLANTunnelAddr == first
    assert len(await IPAMClient(store.kv).ips_by_handle("vxlan-tunnel-addr-h1")) == 1

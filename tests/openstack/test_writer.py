"""The writer's convergence against a real store: only differences written, scoped deletes, dry runs."""

from __future__ import annotations

from typing import Any

from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.openstack import names, ports, resync, secgroups
from calico.openstack.writer import Writer

PORT = {"id": "p1", "device_id": "vm1", "device_owner": "compute:nova", "binding:host_id": "h1",
        "network_id": "n1", "mac_address": "fa:16:3e:00:00:01", "security_groups": ["sg1"],
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "198.18.1.5"}]}
SG = {"id": "sg1", "security_group_rules": [{"id": "r1", "direction": "ingress", "ethertype": "IPv4",
                                             "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}]}


def view(*port_list: dict[str, Any]) -> resync.NeutronView:
    return resync.NeutronView(ports=port_list, security_groups=[SG])


async def test_converge_writes_only_differences_and_deletes_extras(kv: KVStore) -> None:
    store = ResourceStore(kv)
    writer = Writer(store)
    docs, problems = resync.desired(view(PORT))
    assert problems == []
    first = await writer.converge(docs)
    assert (first.created, first.updated, first.deleted) == (2, 0, 0)
    again = await writer.converge(docs)
    assert (again.created, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 2)
    port2 = {**PORT, "id": "p2", "fixed_ips": [{"subnet_id": "s1", "ip_address": "198.18.1.6"}]}
    docs2, _ = resync.desired(view(PORT, port2))
    await writer.converge(docs2)
    # a port gone from Neutron: its endpoint goes; a scoped resync of p2 only would not touch p1
    only_p1, _ = resync.desired(view(PORT))
    scoped = resync.Scope(port="p1")
    scoped_docs, _ = resync.desired(view(PORT), scoped)
    stats = await writer.converge(scoped_docs, owned=resync.owned_by(scoped, view(PORT)))
    assert stats.deleted == 0
    stats = await writer.converge(only_p1, owned=resync.owned_by(resync.Scope(), view(PORT)))
    assert stats.deleted == 1
    left = {r.metadata.name for r in await store.list("WorkloadEndpoint", names.NAMESPACE)}
    assert left == {names.endpoint_name("h1", "vm1", "p1")}


async def test_scoped_resync_of_a_deleted_port_removes_its_endpoint(kv: KVStore) -> None:
    writer = Writer(ResourceStore(kv))
    await writer.converge(resync.desired(view(PORT))[0])
    scope = resync.Scope(port="p1")
    stats = await writer.converge(resync.desired(view(), scope)[0], owned=resync.owned_by(scope, view()))
    assert stats.deleted == 1


async def test_dry_run_counts_and_changes_nothing(kv: KVStore) -> None:
    store = ResourceStore(kv)
    stats = await Writer(store, dry_run=True).converge(resync.desired(view(PORT))[0])
    assert stats.created == 2
    assert await store.list("WorkloadEndpoint", names.NAMESPACE) == []


async def test_put_updates_only_on_change(kv: KVStore) -> None:
    store = ResourceStore(kv)
    writer = Writer(store)
    doc = secgroups.policy(SG)
    await writer.put(doc)
    rev = (await store.get("NetworkPolicy", doc["metadata"]["name"], names.NAMESPACE)).metadata.resourceVersion
    await writer.put(doc)
    same = (await store.get("NetworkPolicy", doc["metadata"]["name"], names.NAMESPACE)).metadata.resourceVersion
    assert rev == same
    await writer.put(ports.no_port_security_profile())
    assert [p.metadata.name for p in await store.list("Profile")] == [names.NO_PORT_SECURITY_PROFILE]

"""The typed resource store on both real backends: key layout, resourceVersion concurrency, cross-resource rules."""

from __future__ import annotations

import asyncio
import json

import pytest

from calico.datastore.kv import KVStore
from calico.datastore.store import AlreadyExists, Conflict, NotFound, Refused, ResourceStore
from calico.resources import Resource, ResourceError, load_documents

KEY_BASE = "/calico/resources/v3/projectcalico.org/"


def one(text: str) -> Resource:
    [res] = load_documents(text)
    return res


def policy(name: str, ns: str = "ns1", tier: str | None = None, order: int = 10) -> Resource:
    tier_line = f"  tier: {tier}\n" if tier else ""
    return one(
        f"""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{tier_line}  order: {order}
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
    destination: {{ports: [80]}}
"""
    )


def pool(name: str, cidr: str) -> Resource:
    return one(f"apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{cidr: {cidr}}}\n")


async def test_create_get_layout_and_metadata(kv: KVStore) -> None:
    store = ResourceStore(kv)
    created = await store.create(policy("allow-web"))
    assert created.metadata.resourceVersion and created.metadata.uid and created.metadata.creationTimestamp
    raw = await kv.get(f"{KEY_BASE}networkpolicies/ns1/allow-web")
    assert raw is not None and str(raw.mod_revision) == created.metadata.resourceVersion
    stored = json.loads(raw.value)
    assert stored["kind"] == "NetworkPolicy" and "resourceVersion" not in stored["metadata"]
    got = await store.get("NetworkPolicy", "allow-web", "ns1")
    assert got == created
    with pytest.raises(AlreadyExists, match=r"NetworkPolicy\(ns1/allow-web\)"):
        await store.create(policy("allow-web"))
    with pytest.raises(NotFound, match=r"NetworkPolicy\(ns2/allow-web\)"):
        await store.get("NetworkPolicy", "allow-web", "ns2")


async def test_namespace_defaults_and_listing(kv: KVStore) -> None:
    store = ResourceStore(kv)
    no_ns = one(
        "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: ext}\n"
        "spec: {nets: [198.18.0.0/24]}\n"
    )
    assert (await store.create(no_ns)).metadata.namespace == "default"
    await store.create(policy("a", "ns1"))
    await store.create(policy("b", "ns2"))
    assert [p.metadata.name for p in await store.list("NetworkPolicy", "ns1")] == ["a"]
    assert sorted(p.metadata.name for p in await store.list("NetworkPolicy")) == ["a", "b"]


async def test_resource_version_concurrency(kv: KVStore) -> None:
    store = ResourceStore(kv)
    v1 = await store.create(policy("p"))
    v2 = await store.update(policy("p", order=20))
    assert int(v2.metadata.resourceVersion) > int(v1.metadata.resourceVersion)
    assert v2.metadata.uid == v1.metadata.uid and v2.metadata.creationTimestamp == v1.metadata.creationTimestamp
    stale = v1.model_copy(update={"spec": v2.spec})
    with pytest.raises(Conflict, match="stale"):
        await store.update(stale)
    with pytest.raises(Conflict):
        await store.delete("NetworkPolicy", "p", "ns1", resource_version=v1.metadata.resourceVersion)
    # Two writers racing from the same version: exactly one wins.
    racers = [v2.model_copy(update={"spec": policy("p", order=o).spec}) for o in (30, 40)]
    results = await asyncio.gather(*(store.update(r) for r in racers), return_exceptions=True)
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
    await store.delete("NetworkPolicy", "p", "ns1")
    with pytest.raises(NotFound):
        await store.update(policy("p"))


async def test_ippool_overlap_refused(kv: KVStore) -> None:
    store = ResourceStore(kv)
    await store.create(pool("a", "198.18.0.0/16"))
    with pytest.raises(Refused, match=r"IPPool\(b\): spec.cidr 198.18.64.0/18 overlaps IPPool\(a\)"):
        await store.create(pool("b", "198.18.64.0/18"))
    await store.create(pool("c", "198.19.0.0/16"))
    await store.create(pool("v6", "fd00:1::/64"))
    await store.update(pool("a", "198.18.0.0/17"))  # a pool never overlaps itself
    assert sorted(p.metadata.name for p in await store.list("IPPool")) == ["a", "c", "v6"]


async def test_tiers(kv: KVStore) -> None:
    store = ResourceStore(kv)
    await store.ensure_default_tier()
    await store.ensure_default_tier()  # idempotent
    default = await store.get("Tier", "default")
    assert default.to_dict()["spec"]["defaultAction"] == "Deny"
    with pytest.raises(Refused, match="default tier cannot be deleted"):
        await store.delete("Tier", "default")
    with pytest.raises(Refused, match="tier 'security' does not exist"):
        await store.create(policy("security.block", tier="security"))
    await store.create(one("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n"))
    await store.create(policy("security.block", tier="security"))
    with pytest.raises(Refused, match="still holds 1 NetworkPolicy"):
        await store.delete("Tier", "security")
    await store.delete("NetworkPolicy", "security.block", "ns1")
    await store.delete("Tier", "security")


async def test_malformed_stored_value_is_isolated(kv: KVStore) -> None:
    store = ResourceStore(kv)
    await store.create(policy("good"))
    await kv.put(f"{KEY_BASE}networkpolicies/ns1/bad", b"{not json")
    await kv.put(f"{KEY_BASE}networkpolicies/ns1/bad2", json.dumps({"kind": "NetworkPolicy", "spec": 1}).encode())
    assert [p.metadata.name for p in await store.list("NetworkPolicy", "ns1")] == ["good"]
    with pytest.raises(ResourceError):
        await store.get("NetworkPolicy", "bad", "ns1")


async def test_malformed_stored_value_can_be_replaced_and_deleted(kv: KVStore) -> None:
    store = ResourceStore(kv)
    await store.create(policy("p1"))
    await store.create(policy("p2"))
    await kv.put(f"{KEY_BASE}networkpolicies/ns1/p1", b"{corrupt")
    await kv.put(f"{KEY_BASE}networkpolicies/ns1/p2", b'{"kind": "NetworkPolicy", "spec": 7}')
    repaired = await store.update(policy("p1", order=42))
    assert repaired.spec.order == 42 and repaired.metadata.uid
    assert (await store.get("NetworkPolicy", "p1", "ns1")).spec.order == 42
    gone = await store.delete("NetworkPolicy", "p2", "ns1")
    assert (gone.KIND, gone.metadata.name) == ("NetworkPolicy", "p2")
    assert await kv.get(f"{KEY_BASE}networkpolicies/ns1/p2") is None
    _, created = await store.apply(policy("p2"))
    assert created

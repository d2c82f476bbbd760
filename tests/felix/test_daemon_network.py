"""Felix against the real embedded store sees the network of hosts: IP pools, VTEPs and routes computed from
Nodes, IPPools, block affinities (`/calico/ipam/v2/host/`) and remote workloads, in safe order, in the
start-of-day batch and then one change at a time. The dataplane is a RecordingDriver (no kernel access)."""

from __future__ import annotations

import json

from calico.calculation.events import (
    DataplaneEvent,
    InSync,
    IPPoolUpdate,
    RouteKind,
    RouteRemove,
    RouteUpdate,
    VTEPRemove,
    VTEPUpdate,
)
from calico.calculation.graph import CalcGraph
from calico.datastore.keys import affinity_key
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.resources import Resource, load_documents
from tests.felix.test_daemon import Running, kv, running, start  # noqa: F401 - fixtures
from tests.felix.util import wait_until

POOL = "198.18.0.0/16"
LOCAL_BLOCK, REMOTE_BLOCK = "198.18.0.0/26", "198.18.1.0/26"


def _doc(text: str) -> Resource:
    [res] = load_documents(text)
    return res


def node(name: str, ipv4: str, vxlan: str) -> Resource:
    return _doc(
        f"""
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {name}}}
spec:
  bgp: {{ipv4Address: {ipv4}}}
  ipv4VXLANTunnelAddr: {vxlan}
"""
    )


def remote_workload(ip: str) -> Resource:
    return _doc(
        f"""
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: node2-k8s-borrower-eth0, namespace: default}}
spec: {{node: node2, orchestrator: k8s, pod: borrower, endpoint: eth0, interfaceName: cali0123456789a,
        ipNetworks: [{ip}/32]}}
"""
    )


async def affine(datastore: KVStore, node_name: str, block: str) -> None:
    await datastore.put(affinity_key(node_name, block), json.dumps({"state": "confirmed", "deleted": False}).encode())


def position(batch: list[DataplaneEvent], event: DataplaneEvent) -> int:
    assert event in batch, f"{event} not in {batch}"
    return batch.index(event)


async def test_network_events_from_a_real_datastore(kv: KVStore, running: list[Running]) -> None:  # noqa: F811
    store = ResourceStore(kv)
    await store.create(node("node1", "198.19.1.1/24", "198.18.0.1"))  # this host (BASE_ENV's hostname)
    await store.create(node("node2", "198.19.2.2/24", "198.18.1.1"))
    await store.create(
        _doc(
            f"{{apiVersion: projectcalico.org/v3, kind: IPPool, metadata: {{name: p4}}, spec: {{cidr: '{POOL}', "
            "vxlanMode: CrossSubnet, natOutgoing: true}}"
        )
    )
    await affine(kv, "node1", LOCAL_BLOCK)
    await affine(kv, "node2", REMOTE_BLOCK)
    await store.create(remote_workload("198.18.0.9"))  # borrowed from this host's block
    r = start(kv, graph=CalcGraph)
    running.append(r)
    await r.ready()

    [batch] = r.driver.batches  # nothing before in-sync: start of day is one batch
    assert isinstance(batch[-1], InSync)
    pool = next(e for e in batch if isinstance(e, IPPoolUpdate))
    assert (pool.cidr, pool.nat_outgoing, pool.vxlan_mode) == (POOL, True, "CrossSubnet")
    vtep2 = next(e for e in batch if isinstance(e, VTEPUpdate) and e.node == "node2")
    assert (vtep2.parent_ip, vtep2.ipv4_addr) == ("198.19.2.2", "198.18.1.1")
    remote = RouteUpdate(REMOTE_BLOCK, "node2", "198.18.1.1", RouteKind.VXLAN)  # another subnet: VXLAN
    borrowed = RouteUpdate("198.18.0.9/32", "node2", "198.18.1.1", RouteKind.VXLAN)
    local = RouteUpdate(LOCAL_BLOCK, "node1", None, RouteKind.LOCAL_BLOCK)
    assert position(batch, pool) < position(batch, vtep2) < min(position(batch, remote), position(batch, borrowed))
    assert local in batch

    # One new affinity: one route, nothing else.
    await affine(kv, "node2", "198.18.1.64/26")
    await wait_until(lambda: len(r.driver.batches) == 2, what="affinity batch")
    assert r.driver.batches[1] == [RouteUpdate("198.18.1.64/26", "node2", "198.18.1.1", RouteKind.VXLAN)]

    # node2 joins this host's subnet: its VTEP, then its routes become direct.
    await store.update(node("node2", "198.19.1.2/24", "198.18.1.1"))
    await wait_until(lambda: len(r.driver.batches) == 3, what="node batch")
    third = r.driver.batches[2]
    assert isinstance(third[0], VTEPUpdate) and third[0].parent_ip == "198.19.1.2"
    assert {e.dst for e in third[1:] if isinstance(e, RouteUpdate) and e.kind is RouteKind.DIRECT} == {
        REMOTE_BLOCK,
        "198.18.1.64/26",
        "198.18.0.9/32",
    }

    # node2 goes: its routes are removed, then its VTEP.
    await store.delete("Node", "node2")
    await wait_until(lambda: len(r.driver.batches) == 4, what="node delete batch")
    fourth = r.driver.batches[3]
    assert sorted(e.dst for e in fourth if isinstance(e, RouteRemove)) == sorted(
        [REMOTE_BLOCK, "198.18.1.64/26", "198.18.0.9/32"]
    )
    assert fourth[-1] == VTEPRemove("node2")
    assert await r.stop() == 0

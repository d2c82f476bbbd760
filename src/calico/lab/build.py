"""Bringing a lab up and down: fabric, datastore, cluster resources, hosts running calico-node.

`up` records the lab's state first and after every step, so `down` (or a failed `up`) can always remove what was
made: daemons by their recorded pids, then every namespace named with the lab's run id.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Any

from calico.datastore.config import DatastoreConfig, open_kv
from calico.datastore.store import AlreadyExists, NotFound, ResourceStore
from calico.lab import daemons, netns, nodes, plan, topology
from calico.lab import openstack as oslab
from calico.lab.state import Host, LabState, save
from calico.resources import parse_resource

READY_TIMEOUT = 60.0


def store_config(state: LabState) -> DatastoreConfig:
    if state.datastore == "embedded":
        return DatastoreConfig("embedded", embedded_path=state.embedded_path)
    return DatastoreConfig("etcdv3", etcd_endpoints=[f"http://127.0.0.1:{p}" for p in state.gateway_ports])


async def write_resources(state: LabState, docs: list[dict[str, Any]], delete: bool = False) -> None:
    kv = await open_kv(store_config(state))
    try:
        store = ResourceStore(kv)
        for doc in docs:
            res = parse_resource(doc)
            if delete:
                with contextlib.suppress(NotFound):
                    await store.delete(res.KIND, res.metadata.name, res.metadata.namespace)
                continue
            try:
                await store.create(res)
            except AlreadyExists:
                await store.update(res)
    finally:
        await kv.close()


def v3(kind: str, name: str, spec: dict[str, Any], namespace: str | None = None,
       labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}


def cluster_resources(state: LabState) -> list[dict[str, Any]]:
    """Pools, Felix and BGP configuration, and each Node's labels (and reflector role) before calico-node runs
    (calico-node fills in the addresses it detects and keeps the rest)."""
    mode = plan.ENCAPS[state.encap]
    docs = [
        v3("IPPool", "default-ipv4-ippool", {"cidr": plan.POOL4, "natOutgoing": True, "vxlanMode": mode}),
        v3("IPPool", "default-ipv6-ippool", {"cidr": plan.POOL6, "vxlanMode": mode}),
        v3("FelixConfiguration", "default", {"healthEnabled": True, "healthPort": nodes.HEALTH_PORT}),
        # A stopped host's routes stay on its peers (graceful restart) for 10 s, not Calico's default 120 s.
        v3("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": state.route_reflectors == 0,
                                           "asNumber": 64512, "logSeverityScreen": "Info",
                                           **({} if state.route_reflectors else {"nodeMeshMaxRestartTime": "10s"})}),
    ]
    for host in state.hosts.values():
        labels = {"lab-host": host.name, "lab-subnet": str(host.subnet)}
        spec: dict[str, Any] = {}
        if host.route_reflector:
            labels["route-reflector"] = "true"
            spec["bgp"] = {"routeReflectorClusterID": plan.RR_CLUSTER_ID}
        docs.append(v3("Node", host.name, spec, labels=labels))
    if state.route_reflectors:
        docs += [
            v3("BGPPeer", "peer-with-route-reflectors",
               {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"}),
        ]
    return docs


def build(d: Path, state: LabState, hosts: int) -> None:
    topology.make_router(state.fabric_ns, state.subnets)
    topology.make_outside(state.fabric_ns, state.outside_ns, state.run_id)
    save(d, state)
    if state.datastore == "embedded":
        state.embedded_path = str(d / "datastore.db")
    else:
        start_etcd(d, state)
    for i in range(1, hosts + 1):
        hp = plan.host_plan(i, state.subnets)
        state.hosts[hp.name] = Host(name=hp.name, netns=f"{state.prefix}{hp.name}", addr4=hp.addr4, addr6=hp.addr6,
                                    index=i, subnet=hp.subnet, run_dir=str(d / hp.name / "run"),
                                    route_reflector=i <= state.route_reflectors)
    asyncio.run(write_resources(state, cluster_resources(state)))
    planned = tuple(plan.host_plan(h.index, state.subnets) for h in state.hosts.values())
    for host, hp in zip(state.hosts.values(), planned, strict=True):
        topology.make_host(host.netns, state.fabric_ns, f"p{state.run_id}{host.name}", hp, peers=planned)
        save(d, state)
    for host in state.hosts.values():
        nodes.start_node(state, host, d)
        save(d, state)
    for host in state.hosts.values():
        nodes.wait_felix_ready(host, READY_TIMEOUT)


def start_etcd(d: Path, state: LabState) -> None:
    """The members `up` recorded in the state (one by default, three with --etcd-members 3)."""
    members = len(state.etcd_members)
    addr = plan.etcd_host()
    for m in state.etcd_members:
        m.pid = daemons.spawn(daemons.etcd_member_argv(state.fabric_ns, addr, m.index, members, d / f"etcd-m{m.index}"),
                              d / f"etcd-m{m.index}.log")
        save(d, state)
    state.etcd_endpoint = ",".join(f"http://{addr}:{m.client_port}" for m in state.etcd_members)
    targets = [m.client_port for m in state.etcd_members]
    state.gateway_pid, ports = daemons.start_gateways(state.fabric_ns, addr, targets, d / "gateway.log")
    for m, port in zip(state.etcd_members, ports, strict=True):
        m.gateway_port = port
    save(d, state)
    for m in state.etcd_members:
        daemons.wait_http(f"http://127.0.0.1:{m.gateway_port}/health", 30, f"etcd member m{m.index}")


def kill_etcd_member(d: Path, state: LabState, index: int) -> None:
    m = state.etcd_members[index]
    daemons.kill(m.pid, "etcd")
    m.pid = 0
    save(d, state)


def restart_etcd_member(d: Path, state: LabState, index: int) -> None:
    m = state.etcd_members[index]
    if daemons.alive(m.pid, "etcd"):
        return
    members = len(state.etcd_members)
    m.pid = daemons.spawn(daemons.etcd_member_argv(state.fabric_ns, plan.etcd_host(), index, members,
                                                   d / f"etcd-m{index}"), d / f"etcd-m{index}.log")
    save(d, state)
    daemons.wait_http(f"http://127.0.0.1:{m.gateway_port}/health", 30, f"etcd member m{index}")


def teardown(d: Path, state: LabState) -> None:
    if state.openstack:  # Neutron first: its driver writes to the datastore stopped below
        oslab.down(oslab.OpenStack(**state.openstack))
    for host in state.hosts.values():
        nodes.stop_node(host)
    for host in state.hosts.values():  # anything a crashed supervisor left behind
        for child in nodes.CHILDREN:
            daemons.kill(host.child_pid(child), nodes.MARKERS[child])
    daemons.stop(state.gateway_pid, "calico.lab.gateway")
    for m in state.etcd_members:
        daemons.stop(m.pid, "etcd")
    for wl in state.workloads.values():
        netns.delete(wl.netns)
    for host in state.hosts.values():
        netns.delete(host.netns)
    netns.delete(state.outside_ns)
    netns.delete(state.fabric_ns)
    # Anything else this run named (a crash between creating and recording a namespace).
    for leftover in sorted(netns.NETNS_DIR.glob(f"{state.prefix}*")) if netns.NETNS_DIR.exists() else []:
        netns.delete(leftover.name)
    shutil.rmtree(d, ignore_errors=True)

"""Attach a workload (addresses from IPAM, the veth, the WorkloadEndpoint) and detach it again.

Order, and why: addresses first (nothing to wire without them), then the veth, then the endpoint (Felix programs
the interface once its endpoint appears; before that the dispatch drops it, so a half-attached workload is
closed, never open). Any failure undoes what was done, in reverse, so no address leaks and no veth is left.
Detach goes the other way: endpoint, veth, addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from calico.datastore.kv import KVStore
from calico.datastore.store import NotFound, ResourceStore
from calico.ipam import AutoAssignArgs, IPAMClient
from calico.resources import parse_resource
from calico.workloads.endpoint import WorkloadSpec, endpoint_resource
from calico.workloads.wiring import unwire_workload, wire_workload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attachment:
    ipv4: str | None
    ipv6: str | None


async def attach(
    kv: KVStore, wl: WorkloadSpec, host_ns: str, wl_ns: str, *, ipv4: bool = True, ipv6: bool = True,
    mtu: int | None = None, ipv4_pools: list[str] | None = None, ipv6_pools: list[str] | None = None,
) -> Attachment:
    """`ipv4_pools` / `ipv6_pools` (names or CIDRs) restrict where the addresses come from, as the CNI plugin's
    pool annotations do; None: every pool that applies to the node."""
    ipam = IPAMClient(kv)
    attrs = {"node": wl.node, "namespace": wl.namespace, "pod" if wl.orchestrator == "k8s" else "workload": wl.name}
    got = await ipam.auto_assign(AutoAssignArgs(num4=int(ipv4), num6=int(ipv6), handle_id=wl.handle_id,
                                                hostname=wl.node, attrs=attrs, ipv4_pools=ipv4_pools,
                                                ipv6_pools=ipv6_pools))
    v4 = str(got.ipv4[0]) if got.ipv4 else None
    v6 = str(got.ipv6[0]) if got.ipv6 else None
    wired = False
    try:
        if (ipv4 and v4 is None) or (ipv6 and v6 is None):
            raise RuntimeError(f"IPAM has no free address for {wl.namespace}/{wl.name} on {wl.node} "
                               f"(got IPv4 {v4 or 'none'}, IPv6 {v6 or 'none'})")
        # In a thread: wiring waits on `ip` processes, and a caller may attach several workloads at once.
        await asyncio.to_thread(wire_workload, host_ns, wl_ns, wl.iface, v4, v6, mtu=mtu)
        wired = True
        nets = [f"{v4}/32"] if v4 else []
        nets += [f"{v6}/128"] if v6 else []
        store = ResourceStore(kv)
        await store.apply(parse_resource(endpoint_resource(wl, nets)))
    except BaseException:
        if wired:
            await asyncio.to_thread(unwire_workload, wl_ns)
        await ipam.release_by_handle(wl.handle_id)
        raise
    return Attachment(v4, v6)


async def detach(kv: KVStore, wl: WorkloadSpec, wl_ns: str) -> None:
    """Idempotent: whatever is already gone is skipped."""
    with contextlib.suppress(NotFound):
        await ResourceStore(kv).delete("WorkloadEndpoint", wl.endpoint_name, wl.namespace)
    await asyncio.to_thread(unwire_workload, wl_ns)
    await IPAMClient(kv).release_by_handle(wl.handle_id)

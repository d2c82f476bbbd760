"""Helpers for IPAM tests: writing the resources IPAM reads, and reading back every allocation with the
invariants checked (each address allocated once, handle records agreeing with the blocks)."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import Any

from calico.datastore import keys
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.ipam import IPAMClient
from calico.ipam import block as blk
from calico.resources import parse_resource
from calico.resources.ipam import AllocationBlock, IPAMHandle


def resource(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> Any:
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name, **meta},
                           "spec": spec})


@dataclass
class World:
    kv: KVStore
    store: ResourceStore
    ipam: IPAMClient

    async def pool(self, name: str, cidr: str, **spec: Any) -> None:
        await self.store.apply(resource("IPPool", name, {"cidr": cidr, **spec}))

    async def node(self, name: str, labels: dict[str, str] | None = None, **spec: Any) -> None:
        meta = {"labels": labels} if labels else {}
        await self.store.apply(resource("Node", name, spec, **meta))

    async def reserve(self, name: str, *cidrs: str) -> None:
        await self.store.apply(resource("IPReservation", name, {"reservedCIDRs": list(cidrs)}))

    async def wep(self, name: str, node: str, *ips: str) -> None:
        await self.store.apply(resource("WorkloadEndpoint", name, {
            "node": node, "interfaceName": f"cali{abs(hash(name)) % 10**8:08d}", "ipNetworks": list(ips)},
            namespace="default"))

    def client(self, **kw: Any) -> IPAMClient:
        return IPAMClient(self.kv, **kw)


async def allocations(kv: KVStore) -> dict[str, str | None]:
    """address -> handle for everything allocated; asserts each address is allocated once and that every handle
    record counts exactly what the blocks hold."""
    blocks, _ = await kv.list(keys.block_prefix())
    handles, _ = await kv.list(keys.IPAM_HANDLE_PREFIX)
    out: dict[str, str | None] = {}
    counted: Counter[tuple[str, str]] = Counter()
    for item in blocks:
        b = AllocationBlock.from_json(item.key, item.value)
        assert sorted(b.unallocated + [o for o, a in enumerate(b.allocations) if a is not None]) == list(
            range(len(b.allocations))), f"{b.cidr}: ordinals lost or doubled"
        for o in range(len(b.allocations)):
            attr = blk.attribute_at(b, o)
            if attr is not None:
                ip = str(blk.address_of(b, o))
                assert ip not in out, f"{ip} allocated twice"
                out[ip] = attr.handle_id
                if attr.handle_id:
                    counted[(attr.handle_id, b.cidr)] += 1
    recorded: Counter[tuple[str, str]] = Counter()
    for item in handles:
        h = IPAMHandle.from_json(item.key, item.value)
        handle_id = keys.parse_handle_key(item.key)
        assert handle_id is not None
        assert h.block, f"handle {handle_id} is kept with no address"
        for cidr, n in h.block.items():
            recorded[(handle_id, cidr)] += n
    assert recorded == counted, f"handle records {dict(recorded)} != blocks {dict(counted)}"
    return out


def ips(*addrs: Any) -> list[str]:
    return [str(ipaddress.ip_address(a)) for a in addrs]

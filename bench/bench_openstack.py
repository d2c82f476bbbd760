"""OpenStack resync: Neutron's view of 3,000 ports and 300 security groups → a consistent datastore.

    .venv/bin/python bench/bench_openstack.py [--ports 3000] [--groups 300] [--rules 6] [--backend embedded|etcd]

The view is synthetic (what the driver reads from Neutron: ports on 30 hosts with 2 groups each, groups with
`--rules` rules, a third of them remote-group rules). Timed: mapping it to Calico documents (pure), the first
resync into an empty datastore (every endpoint, policy and network set created), a second one with nothing to
do (the cost of proving consistency), and one after 1% of the endpoints were changed behind the driver's back.
Not included: Neutron's own reading of its database (the plugin's `get_ports` etc.), measured separately.
etcd is a private single member on 127.0.0.1 (killed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.openstack import names, resync
from calico.openstack.writer import Writer
from calico.resources import parse_resource
from tests.helpers.etcd_server import EtcdServer


def view(n_ports: int, n_groups: int, n_rules: int) -> resync.NeutronView:
    groups = []
    for g in range(n_groups):
        rules = []
        for r in range(n_rules):
            rule = {"id": f"r{g}-{r}", "direction": "ingress" if r % 2 == 0 else "egress",
                    "ethertype": "IPv4" if r % 4 < 2 else "IPv6", "protocol": "tcp",
                    "port_range_min": 1000 + r, "port_range_max": 1000 + r}
            if r % 3 == 0:
                rule["remote_group_id"] = f"sg-{(g + 1) % n_groups:04d}"
            elif r % 3 == 1:
                rule["remote_ip_prefix"] = "198.18.0.0/16" if rule["ethertype"] == "IPv4" else "fd00:1::/48"
            rules.append(rule)
        groups.append({"id": f"sg-{g:04d}", "name": f"g{g}", "security_group_rules": rules})
    ports = []
    for p in range(n_ports):
        ports.append({
            "id": f"port-{p:05d}", "device_id": f"vm-{p:05d}", "device_owner": "compute:nova",
            "binding:host_id": f"h{p % 30}", "network_id": "net-1", "project_id": "proj",
            "mac_address": f"fa:16:3e:{p >> 16 & 255:02x}:{p >> 8 & 255:02x}:{p & 255:02x}",
            "security_groups": [f"sg-{p % n_groups:04d}", f"sg-{(p * 7) % n_groups:04d}"],
            "fixed_ips": [{"subnet_id": "s4", "ip_address": f"198.18.{p >> 8 & 255}.{p & 255}"}],
            "allowed_address_pairs": [{"ip_address": f"198.19.{p >> 8 & 255}.{p & 255}"}] if p % 50 == 0 else [],
        })
    subnets = [{"id": "s4", "network_id": "net-1", "cidr": "198.18.0.0/16", "gateway_ip": "198.18.0.1"}]
    return resync.NeutronView(ports=ports, security_groups=groups, subnets=subnets,
                              networks=[{"id": "net-1", "name": "net1"}])


async def run(kv: KVStore, args: argparse.Namespace) -> list[tuple[str, str]]:
    v = view(args.ports, args.groups, args.rules)
    t0 = time.perf_counter()
    docs, problems = resync.desired(v)
    t_map = time.perf_counter() - t0
    assert not problems, problems
    writer = Writer(ResourceStore(kv))
    owned = resync.owned_by(resync.Scope(), v)
    t0 = time.perf_counter()
    first = await writer.converge(docs, owned=owned)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = await writer.converge(docs, owned=owned)
    t_again = time.perf_counter() - t0
    store = ResourceStore(kv)
    weps = await store.list("WorkloadEndpoint", names.NAMESPACE)
    for wep in weps[: max(1, len(weps) // 100)]:  # 1% changed behind the driver's back
        data = wep.to_dict()
        data["metadata"]["labels"] = {"tampered": "yes"}
        await store.update(parse_resource(data))
    t0 = time.perf_counter()
    fixed = await writer.converge(docs, owned=owned)
    t_fix = time.perf_counter() - t0
    return [
        ("documents (endpoints, policies, network sets)", f"{len(docs)}"),
        ("map Neutron's view to documents", f"{t_map * 1000:.0f} ms"),
        ("first resync into an empty datastore", f"{t_first:.2f} s ({first})"),
        ("resync with nothing to do", f"{t_again:.2f} s ({again})"),
        ("resync after 1% were changed", f"{t_fix:.2f} s ({fixed})"),
        ("startup resync: map + first resync", f"{t_map + t_first:.2f} s (goal <= 1.5 s)"),
    ]


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-os-") as tmp:
        if args.backend == "etcd":
            with EtcdServer(Path(tmp) / "etcd") as server:
                kv: KVStore = await EtcdKV.connect([server.endpoint])
                try:
                    rows = await run(kv, args)
                finally:
                    await kv.close()
        else:
            kv = await EmbeddedKV.open(str(Path(tmp) / "calico.db"))
            try:
                rows = await run(kv, args)
            finally:
                await kv.close()
    width = max(len(k) for k, _ in rows)
    print(f"\nOpenStack resync, {args.ports} ports, {args.groups} groups x {args.rules} rules, {args.backend}")
    for k, val in rows:
        print(f"  {k.ljust(width)}  {val}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ports", type=int, default=3000)
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--rules", type=int, default=6)
    ap.add_argument("--backend", choices=["embedded", "etcd"], default="embedded")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()

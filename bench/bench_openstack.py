"""OpenStack: the startup resync, a security-group rule change reaching the kernel, a VM booted to reachable.

    .venv/bin/python bench/bench_openstack.py resync [--ports 3000] [--groups 300] [--rules 6] [--backend etcd]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_openstack.py rule [--samples 20] [--vms 10]
    flock /tmp/calico-netns.lock .venv/bin/python bench/bench_openstack.py boot [--samples 10]

`rule` and `boot` run on a one-host lab with the real Neutron API server (`calico-lab openstack up`):
`rule`: `--vms` VMs on h1 in one group; a rule allowing a new port is created through Neutron's API; time from the
request to the moment a client VM on h1 has connected to every one of them (probers retry every 2 ms).
`boot`: `POST /v2.0/ports` then `calico-lab vm boot` (the VM's address by DHCP from calico-dhcp-agent; `--static`:
configured directly); time from the port request until a VM on the same host connects to the new VM.

resync:
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
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_network import BIN, Lab  # a script beside this one
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.openstack import names, resync
from calico.openstack.writer import Writer
from calico.resources import parse_resource
from probes import LISTENER, PROBER, kill, spawn_in
from stores import on_fresh_store, print_rows  # a module beside this one

REPO = Path(__file__).resolve().parent.parent


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
    rows = await on_fresh_store(args.backend, "bench-os-", lambda kv: run(kv, args))
    print_rows(f"OpenStack resync, {args.ports} ports, {args.groups} groups x {args.rules} rules, {args.backend}", rows)


# --- on a lab: rule changes and VM boots ----------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def lab_cloud(lab: Any) -> tuple[Any, dict[str, Any]]:
    from calico.openstack.api_source import NeutronClient

    env = {**os.environ, **dict(line.removeprefix("export ").split("=", 1) for line in lab.cli("env").splitlines())}
    subprocess.run([str(BIN / "calicoctl"), "apply", "-f", str(REPO / "examples" / "openstack-pool.yaml")],
                   env=env, check=True, capture_output=True)
    lab.cli("openstack", "up")
    api = NeutronClient(f"http://127.0.0.1:{lab.state.openstack['api_port']}")
    net = api.request("POST", "networks", {"network": {"name": "bench"}})["network"]
    api.request("POST", "subnets", {"subnet": {"network_id": net["id"], "cidr": "198.19.64.0/22", "ip_version": 4}})
    return api, net


def boot(lab: Any, api: Any, net: dict[str, Any], name: str, groups: list[str], dhcp: bool = False) -> Any:
    port = api.request("POST", "ports", {"port": {"network_id": net["id"], "security_groups": groups}})["port"]
    lab.cli("vm", "boot", name, "--host", "h1", "--port", port["id"], *(() if dhcp else ("--static",)))
    return lab.state.workloads[name]


def group(api: Any, name: str) -> str:
    return str(api.request("POST", "security-groups", {"security_group": {"name": name}})["security_group"]["id"])


def bench_rule(args: argparse.Namespace) -> list[tuple[str, str]]:
    times: list[float] = []
    with Lab("--hosts", "1") as lab:
        api, net = lab_cloud(lab)
        target, client_g = group(api, "targets"), group(api, "clients")
        vms = [boot(lab, api, net, f"t{i}", [target]) for i in range(args.vms)]
        client = boot(lab, api, net, "client", [client_g])
        for sample in range(args.samples):
            port = 20000 + sample
            listeners = [spawn_in(vm.netns, LISTENER, vm.ipv4, str(port), "30") for vm in vms]
            probers = [spawn_in(client.netns, PROBER, vm.ipv4, str(port), "10") for vm in vms]
            try:
                for p in probers:
                    assert p.stdin is not None
                    p.stdin.write("go\n")
                    p.stdin.flush()
                time.sleep(0.05)  # every prober is retrying (and failing) before the rule exists
                t0 = time.monotonic()
                api.request("POST", "security-group-rules", {"security_group_rule": {
                    "security_group_id": target, "direction": "ingress", "ethertype": "IPv4",
                    "protocol": "tcp", "port_range_min": port, "port_range_max": port}})
                ends = []
                for p in probers:
                    assert p.stdout is not None
                    word, when, _ = p.stdout.readline().split()
                    if word != "ok":
                        raise RuntimeError(f"rule for port {port} not enforced within 10 s")
                    ends.append(float(when))
                times.append((max(ends) - t0) * 1000)
            finally:
                for proc in (*probers, *listeners):
                    kill(proc)
    return [("rule created -> every VM reachable, p50", f"{pct(times, 50):.0f} ms (goal <= 100 ms)"),
            ("p99 / max", f"{pct(times, 99):.0f} / {max(times):.0f} ms"),
            ("samples, VMs in the group", f"{len(times)}, {args.vms}")]


def bench_boot(args: argparse.Namespace) -> list[tuple[str, str]]:
    times: list[float] = []
    with Lab("--hosts", "1") as lab:
        api, net = lab_cloud(lab)
        open_g = group(api, "open")
        api.request("POST", "security-group-rules", {"security_group_rule": {
            "security_group_id": open_g, "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp"}})
        client = boot(lab, api, net, "client", [open_g])
        for i in range(args.samples):
            t0 = time.monotonic()
            vm = boot(lab, api, net, f"b{i}", [open_g], dhcp=not args.static)
            listener = spawn_in(vm.netns, LISTENER, vm.ipv4, "8080", "30")
            prober = spawn_in(client.netns, PROBER, vm.ipv4, "8080", "10")
            try:
                assert prober.stdin is not None and prober.stdout is not None
                prober.stdin.write("go\n")
                prober.stdin.flush()
                word, when, _ = prober.stdout.readline().split()
                if word != "ok":
                    raise RuntimeError(f"VM b{i} not reachable within 10 s")
                times.append((float(when) - t0) * 1000)
            finally:
                kill(prober)
                kill(listener)
    how = "static configuration" if args.static else "DHCP from calico-dhcp-agent"
    return [(f"port create + vm boot ({how}) -> reachable, p50", f"{pct(times, 50):.0f} ms (goal <= 1000 ms)"),
            ("p99 / max", f"{pct(times, 99):.0f} / {max(times):.0f} ms"), ("samples", str(len(times)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["resync", "rule", "boot"], nargs="?", default="resync")
    ap.add_argument("--ports", type=int, default=3000)
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--rules", type=int, default=6)
    ap.add_argument("--backend", choices=["embedded", "etcd"], default="embedded")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--vms", type=int, default=10)
    ap.add_argument("--static", action="store_true", help="boot: configure VMs statically instead of by DHCP")
    args = ap.parse_args()
    if args.mode == "resync":
        asyncio.run(main_async(args))
        return
    rows = bench_rule(args) if args.mode == "rule" else bench_boot(args)
    width = max(len(k) for k, _ in rows)
    print(f"\nOpenStack {args.mode}")
    for k, val in rows:
        print(f"  {k.ljust(width)}  {val}")


if __name__ == "__main__":
    main()

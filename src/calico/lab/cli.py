"""`calico-lab` commands: build a world of namespaces running real Calico, poke at it, tear it down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from calico.datastore.config import DatastoreConfig, open_kv
from calico.datastore.store import AlreadyExists, NotFound, ResourceStore
from calico.lab import daemons, netns, wiring
from calico.lab.netns import LabError
from calico.lab.probe import PROTOS, probe
from calico.lab.state import Host, LabState, Workload, lab_dir, load, locked, save
from calico.resources import parse_resource

FABRIC_GW4, FABRIC_GW6 = "198.19.255.254/24", "fd00:ffff::fe/64"
POOL4, POOL6 = "198.18.0.0/16", "fd00:1::/48"
HEALTH_PORT = 9099


def fail(msg: str) -> NoReturn:
    click.echo(f"calico-lab: {msg}", err=True)
    sys.exit(2)


def datastore_env(state: LabState, inside: bool) -> dict[str, str]:
    """How to reach the lab's datastore: from inside a lab namespace, or from the root namespace."""
    if state.datastore == "embedded":
        return {"DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": state.embedded_path}
    endpoint = state.etcd_endpoint if inside else f"http://127.0.0.1:{state.gateway_port}"
    return {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": endpoint}


def store_config(state: LabState) -> DatastoreConfig:
    if state.datastore == "embedded":
        return DatastoreConfig("embedded", embedded_path=state.embedded_path)
    return DatastoreConfig("etcdv3", etcd_endpoints=[f"http://127.0.0.1:{state.gateway_port}"])


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """A lab of network namespaces running Calico on this machine (nothing in the root namespace changes)."""


name_option = click.option("--name", "lab", default="lab", show_default=True, help="Which lab.")


@cli.command()
@name_option
@click.option("--hosts", type=click.IntRange(1, 50), default=1, show_default=True)
@click.option("--dataplane", type=click.Choice(["nftables", "iptables"]), default="nftables", show_default=True)
@click.option("--datastore", type=click.Choice(["embedded", "etcd"]), default="embedded", show_default=True)
@click.option("--refresh-interval", type=click.FloatRange(0.5, 3600), default=10.0, show_default=True,
              help="Seconds between felix's read-back and repair of its firewall rules and IP sets.")
def up(lab: str, hosts: int, dataplane: str, datastore: str, refresh_interval: float) -> None:
    """Build the fabric, the hosts and their felix agents (and etcd, with --datastore etcd)."""
    with locked(lab) as d:
        if (d / "state.json").exists():
            fail(f"lab {lab!r} is already up ({d}); `calico-lab down --name {lab}` first")
        run_id = secrets.token_hex(3)
        state = LabState(name=lab, run_id=run_id, dataplane=dataplane, datastore=datastore,
                         fabric_ns=f"cl-{run_id}-fabric", refresh_interval=refresh_interval)
        save(d, state)  # recorded first, so `down` can clean up a half-built lab
        try:
            build(d, state, hosts)
        except (LabError, OSError, subprocess.SubprocessError) as e:
            click.echo(f"calico-lab: up failed: {e}; tearing down", err=True)
            teardown(d, state)
            sys.exit(1)
    click.echo(f"lab {lab!r} is up: {hosts} host(s), {dataplane} dataplane, {datastore} datastore")


def build(d: Path, state: LabState, hosts: int) -> None:
    wiring.make_fabric(state.fabric_ns, FABRIC_GW4, FABRIC_GW6)
    save(d, state)
    if state.datastore == "embedded":
        state.embedded_path = str(d / "datastore.db")
    else:
        gw = FABRIC_GW4.split("/")[0]
        state.etcd_pid = daemons.start_etcd(state.fabric_ns, gw, d / "etcd-data", d / "etcd.log")
        state.etcd_endpoint = f"http://{gw}:{daemons.ETCD_PORT}"
        state.gateway_pid, state.gateway_port = daemons.start_gateway(state.fabric_ns, gw, d / "gateway.log")
        save(d, state)
        daemons.wait_http(f"http://127.0.0.1:{state.gateway_port}/health", 30, "etcd")
    docs = [
        v3("IPPool", "default-ipv4-ippool", {"cidr": POOL4}),
        v3("IPPool", "default-ipv6-ippool", {"cidr": POOL6}),
        v3("FelixConfiguration", "default", {"healthEnabled": True, "healthPort": HEALTH_PORT}),
    ]
    for i in range(1, hosts + 1):
        name = f"h{i}"
        host = Host(name=name, netns=f"{state.prefix}{name}", addr4=f"198.19.255.{i}/24",
                    addr6=f"fd00:ffff::{i:x}/64", index=i)
        wiring.make_host(host.netns, state.fabric_ns, f"p{state.run_id}{name}", host.addr4, host.addr6,
                         FABRIC_GW4, FABRIC_GW6)
        state.hosts[name] = host
        save(d, state)
        docs.append(v3("Node", name, {"bgp": {"ipv4Address": host.addr4, "ipv6Address": host.addr6}}))
    asyncio.run(write_resources(state, docs))
    for host in state.hosts.values():
        host.felix_pid = daemons.start_felix(host.netns, felix_env(state, host), d / f"felix-{host.name}.log")
        save(d, state)
    for host in state.hosts.values():
        daemons.wait_felix_ready(host.netns, HEALTH_PORT, 30)


def felix_env(state: LabState, host: Host) -> dict[str, str]:
    """The environment every felix of this lab runs with (shared by `up` and `felix restart`)."""
    refresh = f"{state.refresh_interval:g}"
    return {**os.environ, **datastore_env(state, inside=True), "FELIX_FELIXHOSTNAME": host.name,
            "FELIX_DATAPLANEBACKEND": state.dataplane, "FELIX_HEALTHENABLED": "true",
            "FELIX_HEALTHPORT": str(HEALTH_PORT), "FELIX_IPTABLESREFRESHINTERVAL": refresh,
            "FELIX_IPSETSREFRESHINTERVAL": refresh}


def teardown(d: Path, state: LabState) -> None:
    for host in state.hosts.values():
        daemons.stop(host.felix_pid, "calico-felix")
    daemons.stop(state.gateway_pid, "calico.lab.gateway")
    daemons.stop(state.etcd_pid, "etcd")
    for wl in state.workloads.values():
        netns.delete(wl.netns)
    for host in state.hosts.values():
        netns.delete(host.netns)
    netns.delete(state.fabric_ns)
    # Anything else this run named (a crash between creating and recording a namespace).
    for leftover in sorted(netns.NETNS_DIR.glob(f"{state.prefix}*")) if netns.NETNS_DIR.exists() else []:
        netns.delete(leftover.name)
    shutil.rmtree(d, ignore_errors=True)


@cli.command()
@name_option
def down(lab: str) -> None:
    """Stop the lab's daemons and delete everything it made."""
    with locked(lab) as d:
        try:
            state = load(d)
        except LabError:
            shutil.rmtree(d, ignore_errors=True)
            click.echo(f"lab {lab!r} is not up")
            return
        teardown(d, state)
    click.echo(f"lab {lab!r} is down")


@cli.group()
def workload() -> None:
    """Add or delete workloads."""


def parse_kv_list(text: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            fail(f"{what}: {item!r} is not KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def parse_ports(text: str) -> list[dict[str, Any]]:
    ports = []
    for name, spec in parse_kv_list(text, "--ports").items():
        port, _, proto = spec.partition("/")
        if not port.isdigit():
            fail(f"--ports: {name}={spec}: expected name=port/proto")
        ports.append({"name": name, "port": int(port), "protocol": (proto or "tcp").upper()})
    return ports


@workload.command("add")
@click.argument("name")
@click.option("--host", "host_name", default="h1", show_default=True)
@click.option("--labels", default="", help="k=v,k2=v2")
@click.option("--namespace", default="default", show_default=True)
@click.option("--ports", default="", help="Named ports: name=port/proto,...")
@click.option("--profile", "profiles", multiple=True, help="Profile(s) for the endpoint.")
@name_option
def workload_add(name: str, host_name: str, labels: str, namespace: str, ports: str, profiles: tuple[str, ...],
                 lab: str) -> None:
    """A workload namespace wired as a CNI plugin wires one, and its WorkloadEndpoint."""
    with locked(lab) as d:
        state = load(d)
        if name in state.workloads:
            fail(f"workload {name!r} already exists")
        host = state.hosts.get(host_name) or fail(f"no host {host_name!r} in lab {lab!r}")
        ipv4 = f"198.18.{host.index}.{host.next_ip}"
        ipv6 = f"fd00:1:0:{host.index:x}::{host.next_ip:x}"
        host.next_ip += 1
        iface = wiring.iface_name("cali", f"{namespace}.{name}")
        wl = Workload(name=name, host=host_name, netns=f"{state.prefix}w-{name}", iface=iface, ipv4=ipv4,
                      ipv6=ipv6, namespace=namespace,
                      endpoint_name=f"{host_name}-k8s-{name.replace('-', '--')}-eth0")
        state.workloads[name] = wl
        save(d, state)
        try:
            wiring.wire_workload(host.netns, wl.netns, iface, ipv4, ipv6)
            all_labels = {**parse_kv_list(labels, "--labels"), "projectcalico.org/namespace": namespace,
                          "projectcalico.org/orchestrator": "k8s"}
            spec: dict[str, Any] = {
                "orchestrator": "k8s", "node": host_name, "pod": name, "endpoint": "eth0", "interfaceName": iface,
                "ipNetworks": [f"{ipv4}/32", f"{ipv6}/128"], "profiles": list(profiles),
            }
            if ports:
                spec["ports"] = parse_ports(ports)
            asyncio.run(write_resources(state, [v3("WorkloadEndpoint", wl.endpoint_name, spec, namespace,
                                                   all_labels)]))
        except (LabError, ValueError) as e:
            wiring.unwire_workload(wl.netns)
            del state.workloads[name]
            save(d, state)
            fail(f"workload add {name}: {e}")
    click.echo(f"workload {name}: {ipv4} {ipv6} on {host_name} ({iface})")


@workload.command("del")
@click.argument("name")
@name_option
def workload_del(name: str, lab: str) -> None:
    """Delete a workload's WorkloadEndpoint and its namespace."""
    with locked(lab) as d:
        state = load(d)
        wl = state.workloads.get(name) or fail(f"no workload {name!r}")
        asyncio.run(write_resources(state, [v3("WorkloadEndpoint", wl.endpoint_name, {"interfaceName": wl.iface,
                                                                                        "node": wl.host},
                                                wl.namespace)], delete=True))
        wiring.unwire_workload(wl.netns)
        del state.workloads[name]
        save(d, state)
    click.echo(f"workload {name} deleted")


def target_ns(state: LabState, name: str) -> str:
    if name in state.workloads:
        return state.workloads[name].netns
    if name in state.hosts:
        return state.hosts[name].netns
    fail(f"no workload or host named {name!r}")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@name_option
def exec(target: str, argv: tuple[str, ...], lab: str) -> None:
    """Run a command inside a workload's (or host's) namespace: calico-lab exec w1 -- ping ..."""
    state = load(lab_dir(lab))
    ns = target_ns(state, target)
    sys.exit(subprocess.run(netns.exec_argv(ns, list(argv)), check=False).returncode)


@cli.command("probe")
@click.argument("src")
@click.argument("dst")
@click.option("--proto", type=click.Choice(PROTOS), default="tcp", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--ipv6", is_flag=True)
@click.option("--timeout", type=float, default=1.0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@name_option
def probe_cmd(src: str, dst: str, proto: str, port: int, ipv6: bool, timeout: float, as_json: bool,
              lab: str) -> None:
    """Exit 0 when a connection from SRC to DST succeeds, 1 when it is blocked."""
    state = load(lab_dir(lab))
    dst_wl = state.workloads.get(dst) or fail(f"no workload {dst!r}")
    result = probe(target_ns(state, src), dst_wl.netns, dst_wl.ipv6 if ipv6 else dst_wl.ipv4, proto, port,
                   timeout, names=(src, dst))
    if result.error:  # the probe itself could not run: that is neither "allowed" nor "blocked"
        fail(f"probe {src} -> {dst}: {result.error}")
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(f"{src} -> {dst} {result.dst_ip} {proto}{'' if proto == 'icmp' else f':{port}'}: "
                   f"{'allowed' if result.ok else 'blocked'}")
    sys.exit(0 if result.ok else 1)


@cli.command()
@click.option("--proto", type=click.Choice(PROTOS), default="tcp", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--ipv6", is_flag=True)
@click.option("--timeout", type=float, default=0.5, show_default=True)
@name_option
def matrix(proto: str, port: int, ipv6: bool, timeout: float, lab: str) -> None:
    """Reachability of every workload from every workload."""
    state = load(lab_dir(lab))
    names = sorted(state.workloads)
    table = Table(caption=f"{proto}{'' if proto == 'icmp' else f':{port}'} {'IPv6' if ipv6 else 'IPv4'}: "
                          "row = source, column = destination")
    table.add_column("from \\ to")
    for n in names:
        table.add_column(n, justify="center")
    for s in names:
        cells = []
        for t in names:
            if s == t:
                cells.append("-")
                continue
            wl = state.workloads[t]
            r = probe(state.workloads[s].netns, wl.netns, wl.ipv6 if ipv6 else wl.ipv4, proto, port, timeout)
            cells.append("[green]ok[/green]" if r.ok else "[red]x[/red]")
        table.add_row(s, *cells)
    Console(width=120).print(table)


@cli.command()
@name_option
def env(lab: str) -> None:
    """`export` lines that point calicoctl at the lab's datastore: eval "$(calico-lab env)"."""
    state = load(lab_dir(lab))
    for k, v in datastore_env(state, inside=False).items():
        click.echo(f"export {k}={v}")


@cli.command()
@name_option
def status(lab: str) -> None:
    """What the lab holds: hosts, felix PIDs, workloads and their addresses."""
    state = load(lab_dir(lab))
    click.echo(f"lab {state.name} (run {state.run_id}): {state.dataplane} dataplane, {state.datastore} datastore")
    for h in state.hosts.values():
        up_ = "running" if daemons.alive(h.felix_pid, "calico-felix") else "NOT running"
        click.echo(f"  host {h.name} ns={h.netns} {h.addr4} felix pid {h.felix_pid} {up_}")
    for w in state.workloads.values():
        click.echo(f"  workload {w.name} on {w.host} {w.ipv4} {w.ipv6} iface {w.iface} ns={w.netns}")


@cli.group()
def felix() -> None:
    """Manage a host's calico-felix."""


@felix.command("restart")
@click.option("--host", "host_name", default="h1", show_default=True)
@click.option("--kill", is_flag=True, help="SIGKILL the running felix (no clean shutdown) instead of SIGTERM.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the new felix to report ready.")
@name_option
def felix_restart(host_name: str, kill: bool, no_wait: bool, lab: str) -> None:
    """Stop the host's felix (if it runs) and start a new one exactly as `up` does; the kernel rules stay."""
    with locked(lab) as d:
        state = load(d)
        host = state.hosts.get(host_name) or fail(f"no host {host_name!r} in lab {lab!r}")
        old = host.felix_pid
        if kill:
            daemons.kill(old, "calico-felix")
        else:
            daemons.stop(old, "calico-felix")
        host.felix_pid = daemons.start_felix(host.netns, felix_env(state, host), d / f"felix-{host.name}.log")
        save(d, state)
        if not no_wait:
            daemons.wait_felix_ready(host.netns, HEALTH_PORT, 30)
    click.echo(f"felix on {host_name} restarted: pid {old} -> {host.felix_pid}")


def main() -> None:
    try:
        cli(prog_name="calico-lab")
    except LabError as e:
        fail(str(e))

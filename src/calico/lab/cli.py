"""`calico-lab` commands: build a world of namespaces running real Calico, poke at it, tear it down.

The commands are thin: `build` makes and removes labs, `nodes` runs calico-node per host and its fault verbs,
`calico.workloads` attaches workloads (IPAM, veth, WorkloadEndpoint), `probe` sends traffic, `status` reads
BIRD, IPAM and the kernel.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from calico.calicoctl.flows import flows as flows_command
from calico.datastore.config import open_kv
from calico.explain import cli as explain_cli
from calico.lab import build, dhcp_client, nodes, plan, status, vms
from calico.lab import openstack as oslab
from calico.lab.netns import LabError, exec_argv
from calico.lab.probe import PROTOS, probe
from calico.lab.reach import Pair, reach
from calico.lab.state import EtcdMember, LabState, Workload, lab_dir, load, locked, save
from calico.workloads.attach import attach, detach
from calico.workloads.endpoint import WorkloadSpec
from calico.workloads.ip import WiringError

OUTSIDE = "outside"


def fail(msg: str) -> NoReturn:
    click.echo(f"calico-lab: {msg}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """A lab of network namespaces running Calico on this machine (nothing in the root namespace changes)."""


name_option = click.option("--name", "lab", default="lab", show_default=True, help="Which lab.")
host_option = click.option("--host", "host_name", default="h1", show_default=True, help="Which host.")


@cli.command()
@name_option
@click.option("--hosts", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--subnets", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Host subnets behind the router (hosts are spread over them; 2 exercises CrossSubnet).")
@click.option("--route-reflectors", type=click.IntRange(0, 8), default=0, show_default=True,
              help="Make the first K hosts route reflectors (and turn the node-to-node mesh off).")
@click.option("--encap", type=click.Choice(list(plan.ENCAPS)), default="none", show_default=True,
              help="Encapsulation of the default pools (vxlanMode Never / Always / CrossSubnet).")
@click.option("--dataplane", type=click.Choice(["nftables", "iptables"]), default="nftables", show_default=True)
@click.option("--datastore", type=click.Choice(["embedded", "etcd"]), default="embedded", show_default=True)
@click.option("--etcd-members", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="With --datastore etcd: members of the etcd cluster.")
@click.option("--refresh-interval", type=click.FloatRange(0.5, 3600), default=10.0, show_default=True,
              help="Seconds between felix's read-back and repair of its firewall rules and IP sets.")
def up(lab: str, hosts: int, subnets: int, route_reflectors: int, encap: str, dataplane: str, datastore: str,
       etcd_members: str, refresh_interval: float) -> None:
    """Build the fabric, the datastore and the hosts, each running calico-node (felix, BIRD, the renderer)."""
    if route_reflectors > hosts:
        fail(f"--route-reflectors {route_reflectors} is more than --hosts {hosts}")
    with locked(lab) as d:
        if (d / "state.json").exists():
            fail(f"lab {lab!r} is already up ({d}); `calico-lab down --name {lab}` first")
        run_id = secrets.token_hex(3)
        state = LabState(name=lab, run_id=run_id, dataplane=dataplane, datastore=datastore,
                         fabric_ns=f"cl-{run_id}-router", outside_ns=f"cl-{run_id}-outside", subnets=subnets,
                         encap=encap, route_reflectors=route_reflectors, refresh_interval=refresh_interval)
        if datastore == "etcd":
            state.etcd_members = [EtcdMember(index=i, client_port=plan.ETCD_CLIENT_PORTS[i])
                                  for i in range(int(etcd_members))]
        save(d, state)  # recorded first, so `down` can clean up a half-built lab
        try:
            build.build(d, state, hosts)
        except (LabError, OSError, subprocess.SubprocessError) as e:
            click.echo(f"calico-lab: up failed: {e}; tearing down", err=True)
            build.teardown(d, state)
            sys.exit(1)
    members = f" ({etcd_members} members)" if datastore == "etcd" else ""
    click.echo(f"lab {lab!r} is up: {hosts} host(s) in {subnets} subnet(s), {dataplane} dataplane, "
               f"{datastore} datastore{members}, encapsulation {encap}"
               + (f", {route_reflectors} route reflector(s)" if route_reflectors else ", full mesh"))


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
        build.teardown(d, state)
    click.echo(f"lab {lab!r} is down")


# --- workloads --------------------------------------------------------------------------------------------


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


def workload_spec(wl_name: str, host: str, namespace: str, labels: dict[str, str],
                  ports: list[dict[str, Any]] | None = None, profiles: tuple[str, ...] = ()) -> WorkloadSpec:
    return WorkloadSpec(name=wl_name, node=host, namespace=namespace, labels=labels, ports=tuple(ports or ()),
                        profiles=profiles)


async def _with_kv(state: LabState, fn: Any) -> Any:
    kv = await open_kv(build.store_config(state))
    try:
        return await fn(kv)
    finally:
        await kv.close()


@workload.command("add")
@click.argument("names", nargs=-1, required=True)
@host_option
@click.option("--labels", default="", help="k=v,k2=v2")
@click.option("--namespace", default="default", show_default=True)
@click.option("--ports", default="", help="Named ports: name=port/proto,...")
@click.option("--profile", "profiles", multiple=True, help="Profile(s) for the endpoint.")
@click.option("--ipv4-pool", "ipv4_pools", multiple=True, help="Take the IPv4 address from this pool (name or CIDR).")
@click.option("--ipv6-pool", "ipv6_pools", multiple=True, help="Take the IPv6 address from this pool (name or CIDR).")
@name_option
def workload_add(names: tuple[str, ...], host_name: str, labels: str, namespace: str, ports: str,
                 profiles: tuple[str, ...], ipv4_pools: tuple[str, ...], ipv6_pools: tuple[str, ...], lab: str) -> None:
    """Workload namespaces wired as a CNI plugin wires them, addresses from Calico IPAM, and their endpoints.

    NAMES are NAME or NAME@HOST (HOST instead of --host); several are attached at once, each on its own."""
    with locked(lab) as d:
        state = load(d)
        label_map = parse_kv_list(labels, "--labels")
        port_list = parse_ports(ports) if ports else None
        specs: list[tuple[WorkloadSpec, str]] = []
        for arg in names:
            name, _, on = arg.partition("@")
            on = on or host_name
            if name in state.workloads or any(s.name == name for s, _ in specs):
                fail(f"workload {name!r} already exists")
            host = state.hosts.get(on) or fail(f"no host {on!r} in lab {lab!r}")
            specs.append((workload_spec(name, on, namespace, label_map, port_list, profiles), host.netns))

        def wl_ns(spec: WorkloadSpec) -> str:
            return f"{state.prefix}w-{spec.name}"

        async def all_of(kv: Any) -> list[Any]:
            slots = asyncio.Semaphore(8)  # bounded: each attach spawns `ip` processes

            async def one(spec: WorkloadSpec, host_ns: str) -> Any:
                async with slots:
                    return await attach(kv, spec, host_ns, wl_ns(spec), mtu=plan.workload_mtu(state.encap),
                                        ipv4_pools=list(ipv4_pools) or None, ipv6_pools=list(ipv6_pools) or None)
            return await asyncio.gather(*(one(sp, ns) for sp, ns in specs), return_exceptions=True)

        results = asyncio.run(_with_kv(state, all_of))
        errors = []
        for (spec, _), got in zip(specs, results, strict=True):
            if isinstance(got, BaseException):
                if not isinstance(got, (LabError, ValueError, RuntimeError)):
                    raise got
                errors.append(f"workload add {spec.name}: {got}")
                continue
            state.workloads[spec.name] = Workload(
                name=spec.name, host=spec.node, netns=wl_ns(spec), iface=spec.iface,
                ipv4=got.ipv4 or "", ipv6=got.ipv6 or "", namespace=namespace, endpoint_name=spec.endpoint_name,
                labels=label_map)
            click.echo(f"workload {spec.name}: {got.ipv4} {got.ipv6} on {spec.node} ({spec.iface})")
        save(d, state)  # the ones that worked are kept, also when another failed
        if errors:
            fail("; ".join(errors))


@workload.command("del")
@click.argument("name")
@name_option
def workload_del(name: str, lab: str) -> None:
    """Delete a workload's endpoint, its namespace, and release its addresses."""
    with locked(lab) as d:
        state = load(d)
        wl = state.workloads.get(name) or fail(f"no workload {name!r}")
        spec = workload_spec(name, wl.host, wl.namespace, wl.labels)
        asyncio.run(_with_kv(state, lambda kv: detach(kv, spec, wl.netns)))
        del state.workloads[name]
        save(d, state)
    click.echo(f"workload {name} deleted")


# --- looking and poking -------------------------------------------------------------------------------------


def target_ns(state: LabState, name: str) -> str:
    if name in state.workloads:
        return state.workloads[name].netns
    if name in state.hosts:
        return state.hosts[name].netns
    if name == OUTSIDE:
        return state.outside_ns
    if name == "router":
        return state.fabric_ns
    fail(f"no workload or host named {name!r}")


def destination(state: LabState, name: str, ipv6: bool) -> tuple[str, str]:
    """(namespace, address) of a probe's destination: a workload, or `outside` (the server beyond the router)."""
    if name == OUTSIDE:
        return state.outside_ns, plan.OUTSIDE6 if ipv6 else plan.OUTSIDE4
    wl = state.workloads.get(name) or fail(f"no workload {name!r} (or `outside`)")
    return wl.netns, wl.ipv6 if ipv6 else wl.ipv4


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("target")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
@name_option
def exec(target: str, argv: tuple[str, ...], lab: str) -> None:
    """Run a command inside a workload's, host's, `outside` or `router` namespace: calico-lab exec w1 -- ip a"""
    state = load(lab_dir(lab))
    sys.exit(subprocess.run(exec_argv(target_ns(state, target), list(argv)), check=False).returncode)


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
    """Exit 0 when a connection from SRC to DST (a workload, or `outside`) succeeds, 1 when it is blocked."""
    state = load(lab_dir(lab))
    dst_ns, dst_ip = destination(state, dst, ipv6)
    if not dst_ip:
        fail(f"{dst} has no IPv{'6' if ipv6 else '4'} address")
    result = probe(target_ns(state, src), dst_ns, dst_ip, proto, port, timeout, names=(src, dst))
    if result.error:  # the probe itself could not run: that is neither "allowed" nor "blocked"
        fail(f"probe {src} -> {dst}: {result.error}")
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        seen = f" (seen from {result.seen_from})" if result.seen_from else ""
        click.echo(f"{src} -> {dst} {result.dst_ip} {proto}{'' if proto == 'icmp' else f':{port}'}: "
                   f"{'allowed' if result.ok else 'blocked'}{seen}")
    sys.exit(0 if result.ok else 1)


@cli.command("flows", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@name_option
def flows_cmd(args: tuple[str, ...], lab: str) -> None:
    """Recent flows on every host of the lab, merged by time (`calicoctl flows`' filters: --action, --namespace,
    --endpoint, --policy, --last, -o json). Felix flushes them every few seconds."""
    state = load(lab_dir(lab))
    dirs = [str(nodes.flow_log_dir(lab_dir(lab), h)) for h in sorted(state.hosts)]
    for d in dirs:
        os.makedirs(d, exist_ok=True)  # a host that logged nothing yet
    flows_command.main([arg for d in dirs for arg in ("--dir", d)] + list(args), prog_name="calico-lab flows")


@cli.command("explain")
@click.argument("src")
@click.argument("dst")
@click.option("--ipv6", is_flag=True, help="The workloads' IPv6 addresses (default IPv4).")
@explain_cli.flow_options
@name_option
def explain_cmd(src: str, dst: str, ipv6: bool, lab: str, **kw: Any) -> None:
    """Why a flow from SRC to DST (workloads, VMs or `outside`) is allowed or denied, from the lab's datastore
    (as `calicoctl explain`; exit 0 allow, 1 deny, 2 error)."""
    state = load(lab_dir(lab))
    ends = []
    for name in (src, dst):
        if name != OUTSIDE and name not in state.workloads:
            fail(f"no workload {name!r} (or `outside`)")
        _, ip = destination(state, name, ipv6)
        if not ip:
            fail(f"{name} has no IPv{'6' if ipv6 else '4'} address")
        ends.append(ip)
    opts = explain_cli.options(**kw)
    sys.exit(asyncio.run(_with_kv(state, lambda kv: explain_cli.run(kv, ends[0], ends[1], opts))))


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
                          "row = source, column = destination (workload@host)")
    table.add_column("from \\ to")
    for n in names:
        table.add_column(f"{n}@{state.workloads[n].host}", justify="center")
    def pair(s: str, t: str) -> Pair:
        wl = state.workloads[t]
        return Pair(state.workloads[s].netns, wl.netns, wl.ipv6 if ipv6 else wl.ipv4)

    pairs = [pair(s, t) for s in names for t in names if s != t and pair(s, t).dst_ip]
    # TCP: every pair at once from this process; other protocols: one probe (two processes) per pair.
    if proto == "tcp":
        oks = {p for p, t in asyncio.run(reach(pairs, port, timeout)).items() if t is not None}
    else:
        oks = {p for p in pairs if probe(p.src_ns, p.dst_ns, p.dst_ip, proto, port, timeout).ok}
    for s in names:
        cells = ["-" if s == t else "[green]ok[/green]" if pair(s, t) in oks else "[red]x[/red]" for t in names]
        table.add_row(f"{s}@{state.workloads[s].host}", *cells)
    Console(width=160).print(table)


@cli.command()
@name_option
def env(lab: str) -> None:
    """`export` lines that point calicoctl at the lab's datastore (and, with OpenStack up, the `openstack` CLI
    at its Neutron): eval "$(calico-lab env)"."""
    state = load(lab_dir(lab))
    for k, v in nodes.datastore_env(state, inside=False).items():
        click.echo(f"export {k}={v}")
    if state.openstack:
        for k, v in oslab.client_env(oslab.OpenStack(**state.openstack)).items():
            click.echo(f"export {k}={shlex.quote(v)}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True)
@name_option
def status_cmd(as_json: bool, lab: str) -> None:
    """Hosts, their processes, BGP sessions, blocks and routes, and the workloads, at a glance."""
    state = load(lab_dir(lab))
    report = status.collect(state)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    status.show(state, report, Console(width=160))


@cli.command("wait")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@name_option
def wait_cmd(timeout: float, lab: str) -> None:
    """Wait until every process runs, every BGP session is Established and every host routes to every other
    host's blocks; exit 1 with what is missing after TIMEOUT."""
    state = load(lab_dir(lab))
    start = time.monotonic()
    while True:
        missing = status.problems(status.collect(state))
        if not missing:
            click.echo(f"lab {lab!r} converged in {time.monotonic() - start:.1f}s")
            return
        if time.monotonic() - start > timeout:
            click.echo(f"lab {lab!r} not converged after {timeout:.0f}s:", err=True)
            for m in missing[:20]:
                click.echo(f"  {m}", err=True)
            sys.exit(1)
        time.sleep(0.5)


# --- fault verbs ---------------------------------------------------------------------------------------------


def _host(state: LabState, name: str) -> Any:
    return state.hosts.get(name) or fail(f"no host {name!r}")


def _child_group(child: str, title: str) -> click.Group:
    group = click.Group(child, help=f"Stop, start or restart one host's {title} (calico-node keeps the rest).")

    @group.command("stop")
    @host_option
    @click.option("--kill", is_flag=True, help="SIGKILL (a crash) instead of SIGTERM.")
    @name_option
    def stop(host_name: str, kill: bool, lab: str) -> None:
        with locked(lab) as d:
            pid = nodes.stop_child(_host(load(d), host_name), child, kill)
        click.echo(f"{child} on {host_name} stopped (pid {pid}); calico-node holds it until `{child} start`")

    @group.command("start")
    @host_option
    @name_option
    def start(host_name: str, lab: str) -> None:
        with locked(lab) as d:
            pid = nodes.start_child(_host(load(d), host_name), child)
        click.echo(f"{child} on {host_name} started (pid {pid})")

    @group.command("restart")
    @host_option
    @click.option("--kill", is_flag=True, help="SIGKILL (a crash) instead of SIGTERM.")
    @click.option("--no-wait", is_flag=True, help="Do not wait for felix to report ready again.")
    @name_option
    def restart(host_name: str, kill: bool, no_wait: bool, lab: str) -> None:
        with locked(lab) as d:
            host = _host(load(d), host_name)
            old, new = nodes.restart_child(host, child, kill)
            if child == "felix" and not no_wait:
                nodes.wait_felix_ready(host, 30)
        click.echo(f"{child} on {host_name} restarted: pid {old} -> {new}")

    return group


cli.add_command(_child_group("felix", "calico-felix"))
cli.add_command(_child_group("bird", "BIRD"))


@cli.group("node")
def node_group() -> None:
    """Stop or start a whole host's calico-node (felix, BIRD and the renderer with it)."""


@node_group.command("stop")
@host_option
@click.option("--kill", is_flag=True, help="SIGKILL calico-node and its children at once (a host crash).")
@name_option
def node_stop(host_name: str, kill: bool, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        nodes.stop_node(_host(state, host_name), kill)
        save(d, state)
    click.echo(f"calico-node on {host_name} stopped; its routes and rules stay in the kernel")


@node_group.command("start")
@host_option
@click.option("--no-wait", is_flag=True)
@name_option
def node_start(host_name: str, no_wait: bool, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        host = _host(state, host_name)
        if nodes.node_running(host):
            fail(f"calico-node on {host_name} is already running (pid {host.node_pid})")
        nodes.start_node(state, host, d)
        save(d, state)
        if not no_wait:
            nodes.wait_felix_ready(host, build.READY_TIMEOUT)
    click.echo(f"calico-node on {host_name} started (pid {host.node_pid})")


@cli.group("etcd")
def etcd_group() -> None:
    """Kill or restart one member of the lab's etcd cluster."""


@etcd_group.command("kill")
@click.option("--member", type=int, default=0, show_default=True)
@name_option
def etcd_kill(member: int, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        if not 0 <= member < len(state.etcd_members):
            fail(f"no etcd member {member} (this lab has {len(state.etcd_members)})")
        build.kill_etcd_member(d, state, member)
    click.echo(f"etcd member m{member} killed")


@etcd_group.command("restart")
@click.option("--member", type=int, default=0, show_default=True)
@name_option
def etcd_restart(member: int, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        if not 0 <= member < len(state.etcd_members):
            fail(f"no etcd member {member} (this lab has {len(state.etcd_members)})")
        build.restart_etcd_member(d, state, member)
    click.echo(f"etcd member m{member} running again")


def main() -> None:
    try:
        cli(prog_name="calico-lab")
    except LabError as e:
        fail(str(e))


# --- OpenStack: the Neutron API server, and VMs on its ports ------------------------------------------------


@cli.group("openstack")
def openstack_group() -> None:
    """The lab's OpenStack controller: MariaDB and the real Neutron API server with the calico driver."""


@openstack_group.command("up")
@name_option
def openstack_up(lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        if state.openstack:
            fail(f"OpenStack is up in lab {lab!r} already")
        st = oslab.up(d, nodes.datastore_env(state, inside=False))
        try:
            oslab.start_dhcp_agents(st, {h.name: (h.netns, d / h.name) for h in state.hosts.values()},
                                    nodes.datastore_env(state, inside=True), plan.workload_mtu(state.encap))
        except BaseException:
            oslab.down(st)
            raise
        state.openstack = dataclasses.asdict(st)
        save(d, state)
    click.echo(f"Neutron API at {st.endpoint} (noauth); eval \"$(calico-lab env --name {lab})\" for the CLI")


@openstack_group.command("down")
@name_option
def openstack_down(lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        if state.openstack:
            oslab.down(oslab.OpenStack(**state.openstack))
            state.openstack = {}
            save(d, state)
    click.echo("OpenStack is down")


@cli.group()
def vm() -> None:
    """VMs on Neutron ports: the lab plays Nova (bind, plug the tap, DHCP)."""


@vm.command("boot")
@click.argument("name")
@host_option
@click.option("--port", "port_id", required=True, help="The Neutron port to plug.")
@click.option("--static", is_flag=True, help="Configure the fixed IPs directly (a config drive) instead of by DHCP.")
@name_option
def vm_boot(name: str, host_name: str, port_id: str, static: bool, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        try:
            got = vms.boot(state, name, host_name, port_id, dhcp=None if static else dhcp_client.run_in)
        except (LabError, WiringError) as e:
            fail(f"vm boot {name}: {e}")
        state.workloads[name] = got
        save(d, state)
    click.echo(f"vm {name}: {got.ipv4} {got.ipv6} on {host_name} ({got.iface}, port {port_id})")


def _vm(state: LabState, name: str) -> Workload:
    got = state.workloads.get(name)
    if got is None or not got.port_id:
        fail(f"no VM {name!r}")
    return got


@vm.command("delete")
@click.argument("name")
@name_option
def vm_delete(name: str, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        got = _vm(state, name)
        try:
            vms.delete(state, got)
        except LabError as e:
            fail(f"vm delete {name}: {e}")
        del state.workloads[name]
        save(d, state)
    click.echo(f"vm {name} deleted")


@vm.command("migrate")
@click.argument("name")
@host_option
@name_option
def vm_migrate(name: str, host_name: str, lab: str) -> None:
    with locked(lab) as d:
        state = load(d)
        got = _vm(state, name)
        try:
            state.workloads[name] = vms.migrate(state, got, host_name)
        except (LabError, WiringError) as e:
            fail(f"vm migrate {name}: {e}")
        save(d, state)
    click.echo(f"vm {name} is on {host_name}")

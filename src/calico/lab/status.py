"""`calico-lab status`: every host's processes, BGP sessions, blocks and routes, read from where they live.

Processes from their pids; BGP sessions from each host's BIRD control socket (`calico.bgp`); blocks from the IPAM
affinities in the datastore; routes from the host namespace's kernel table (BIRD's and Felix's, by protocol).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from calico.bgp.bird import BirdError
from calico.bgp.sessions import bird_sessions
from calico.datastore.config import open_kv
from calico.datastore.keys import host_affinity_prefix, parse_affinity_key
from calico.lab import build, daemons, nodes
from calico.lab.netns import run
from calico.lab.state import Host, LabState

RTPROT_BIRD, RTPROT_FELIX = 12, 80


def bgp_sessions(host: Host) -> list[dict[str, str]] | None:
    """The host's BGP sessions as calicoctl node status shows them; None when BIRD does not answer."""
    try:
        sessions = bird_sessions(host.bird_socket, timeout=2.0)
    except BirdError:
        return None
    return [{"peer_address": s.peer_address, "peer_type": s.peer_type, "state": s.state, "since": s.since,
             "info": s.info, "established": s.established} for s in sessions]


def kernel_routes(host: Host) -> dict[str, list[str]]:
    """Destinations of BIRD's (protocol bird) and Felix's (protocol 80) routes in the host's main table."""
    out: dict[str, list[str]] = {"bird": [], "felix": []}
    for fam in ("-4", "-6"):
        res = run("ip", "-n", host.netns, "-j", fam, "route", "show", "table", "main", check=False)
        for r in json.loads(res.stdout or "[]"):
            proto = str(r.get("protocol", ""))
            dev = r.get("dev", "")
            where = f"{r.get('dst')} {'via ' + r['gateway'] if 'gateway' in r else ''} dev {dev}".replace("  ", " ")
            if proto in ("bird", str(RTPROT_BIRD)):
                out["bird"].append(where)
            elif proto == str(RTPROT_FELIX):
                out["felix"].append(where)
    return out


async def _affinities(state: LabState) -> dict[str, list[str]]:
    kv = await open_kv(build.store_config(state))
    try:
        kvs, _ = await kv.list(host_affinity_prefix())
    finally:
        await kv.close()
    out: dict[str, list[str]] = {}
    for item in kvs:
        parsed = parse_affinity_key(item.key)
        if parsed:
            out.setdefault(parsed[0], []).append(parsed[1])
    return out


def collect(state: LabState) -> dict[str, Any]:
    try:
        blocks = asyncio.run(_affinities(state))
    except Exception as e:  # the datastore may be the thing that is down: report, do not die
        blocks = {"_error": [str(e)]}
    hosts = []
    for h in state.hosts.values():
        hosts.append({
            "name": h.name, "address": h.addr4, "address6": h.addr6, "subnet": h.subnet,
            "route_reflector": h.route_reflector,
            "calico_node": nodes.node_running(h),
            "felix": daemons.alive(h.felix_pid, nodes.MARKERS["felix"]),
            "bird": daemons.alive(h.child_pid("bird"), nodes.MARKERS["bird"]),
            "sessions": bgp_sessions(h),
            "blocks": sorted(blocks.get(h.name, [])),
            "routes": kernel_routes(h),
        })
    workloads = [{"name": w.name, "host": w.host, "ipv4": w.ipv4, "ipv6": w.ipv6, "iface": w.iface}
                 for w in state.workloads.values()]
    return {"lab": state.name, "dataplane": state.dataplane, "datastore": state.datastore, "encap": state.encap,
            "subnets": state.subnets, "route_reflectors": state.route_reflectors, "hosts": hosts,
            "workloads": workloads, "datastore_error": blocks.get("_error")}


def _mark(ok: bool) -> str:
    return "[green]up[/green]" if ok else "[red]down[/red]"


def show(state: LabState, report: dict[str, Any], console: Console) -> None:
    console.print(f"lab [bold]{state.name}[/bold] (run {state.run_id}): {state.dataplane} dataplane, "
                  f"{state.datastore} datastore, encapsulation {state.encap}, "
                  + (f"{state.route_reflectors} route reflector(s)" if state.route_reflectors else "full mesh"))
    table = Table(title="hosts")
    for col in ("host", "address", "node", "felix", "bird", "BGP sessions", "blocks", "routes (bird/felix)"):
        table.add_column(col)
    for h in report["hosts"]:
        sessions = h["sessions"]
        if sessions is None:
            bgp = "[red]no answer[/red]"
        else:
            est = sum(1 for s in sessions if s["established"])
            lines = [f"{s['peer_address']} {s['peer_type']} {s['info']}" for s in sessions]
            bgp = f"{est}/{len(sessions)} established\n" + "\n".join(lines)
        name = h["name"] + (" (RR)" if h["route_reflector"] else "")
        table.add_row(name, f"{h['address']}\nsubnet {h['subnet']}", _mark(h["calico_node"]), _mark(h["felix"]),
                      _mark(h["bird"]), bgp, "\n".join(h["blocks"]) or "-",
                      f"{len(h['routes']['bird'])} / {len(h['routes']['felix'])}")
    console.print(table)
    if report["workloads"]:
        wt = Table(title="workloads")
        for col in ("workload", "host", "IPv4", "IPv6", "interface"):
            wt.add_column(col)
        for w in report["workloads"]:
            wt.add_row(w["name"], w["host"], w["ipv4"], w["ipv6"], w["iface"])
        console.print(wt)
    if report.get("datastore_error"):
        console.print(f"[red]datastore unreachable: {report['datastore_error'][0]}[/red]")


def problems(report: dict[str, Any]) -> list[str]:
    """Why the lab's network has not converged yet: a node or felix or BIRD down, a BGP session not
    Established, or a host missing a route to another host's block. Empty when everything is in place."""
    out: list[str] = []
    if report.get("datastore_error"):
        out.append(f"datastore: {report['datastore_error'][0]}")
    for h in report["hosts"]:
        for what in ("calico_node", "felix", "bird"):
            if not h[what]:
                out.append(f"{h['name']}: {what} is not running")
        if h["sessions"] is None:
            out.append(f"{h['name']}: BIRD does not answer")
        else:
            out += [f"{h['name']}: BGP session with {s['peer_address']} is {s['info'] or s['state']}"
                    for s in h["sessions"] if not s["established"]]
        have = {r.split(" ", 1)[0] for r in h["routes"]["bird"] + h["routes"]["felix"]}
        for other in report["hosts"]:
            if other["name"] != h["name"]:
                out += [f"{h['name']}: no route to {other['name']}'s block {b}" for b in other["blocks"]
                        if b not in have]
    return out

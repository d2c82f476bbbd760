"""`calicoctl ipam`: show, check, release, configure, as Calico's calicoctl has them; and what `calicoctl delete
node` does first (`remove_node_data`).

    calicoctl ipam show [--ip=ADDR | --show-blocks | --show-borrowed | --show-configuration]
    calicoctl ipam check [-o FILE] [--show-all-ips] [--show-problem-ips]
    calicoctl ipam release (--ip=ADDR | --from-report=FILE)
    calicoctl ipam configure --strictaffinity=true|false [--max-blocks-per-host=N]

Enters: the datastore the CalicoAPIConfig or the environment names. Leaves: text on stdout (tables as calicoctl
prints them; `--show-blocks` adds an AFFINITY column, the node each block is affine to) and, for check `-o`, the
report as JSON. `check` needs no Kubernetes here: owners are WorkloadEndpoints and Nodes (see
`calico.ipam.report`). Like Calico's, `check` exits 0 whatever it finds; the problem count is on its last line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from calico import __version__
from calico.calicoctl.session import fail, open_kv
from calico.calicoctl.tables import boxed
from calico.datastore.keys import host_affinity_prefix, parse_affinity_key
from calico.datastore.store import ResourceStore, StoreError
from calico.ipam import Expected, IPAMClient, IPAMError, NodeRelease, report
from calico.resources import HostEndpoint, WorkloadEndpoint
from calico.resources.ipam import IPAMConfig

T = TypeVar("T")


class _Ctx(Protocol):
    config: str | None


def _run(ctx: _Ctx, op: Callable[[IPAMClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_kv(ctx.config) as kv:
            try:
                return await op(IPAMClient(kv))
            except IPAMError as e:
                fail(f"IPAM error: {e}")

    return asyncio.run(go())


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        fail(f"Invalid IP address specified: {text!r}")


@click.group()
def ipam() -> None:
    """IP address management: show usage, check for leaks, release addresses, configure."""


# --- show ---------------------------------------------------------------------------------------------------


@ipam.command()
@click.option("--ip", "ip_text", default=None, help="Show who holds this address.")
@click.option("--show-blocks", is_flag=True, help="Show each block, its affinity and its usage.")
@click.option("--show-borrowed", is_flag=True, help="Show addresses borrowed from other nodes' blocks.")
@click.option("--show-configuration", is_flag=True, help="Show the IPAM configuration.")
@click.pass_obj
def show(ctx: _Ctx, ip_text: str | None, show_blocks: bool, show_borrowed: bool, show_configuration: bool) -> None:
    """Show address usage per pool (and block), or who holds one address."""
    if sum(map(bool, (ip_text, show_blocks, show_borrowed, show_configuration))) > 1:
        fail("Give at most one of --ip, --show-blocks, --show-borrowed, --show-configuration")
    if ip_text is not None:
        addr = _address(ip_text)
        found = _run(ctx, lambda c: c.assignment(addr))
        click.echo(_describe_assignment(addr, found), nl=False)
    elif show_borrowed:
        rows = _run(ctx, lambda c: c.borrowed())
        click.echo(boxed(["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"],
                         [[r.address, r.borrowing_node, r.block, r.block_owner, r.type, r.allocated_to] for r in rows]),
                   nl=False)
    elif show_configuration:
        cfg = _run(ctx, lambda c: c.get_config())
        click.echo(boxed(["PROPERTY", "VALUE"], [
            ["StrictAffinity", str(cfg.strict_affinity).lower()],
            ["AutoAllocateBlocks", str(cfg.auto_allocate_blocks).lower()],
            ["MaxBlocksPerHost", str(cfg.max_blocks_per_host)],
        ]), nl=False)
    else:
        click.echo(usage_table(_run(ctx, lambda c: c.usage()), show_blocks), nl=False)


def _describe_assignment(addr: Any, found: Any) -> str:
    if found is None:
        return f"{addr} is not assigned\n"
    lines = [f"IP {addr} is in use", f"Handle ID: {found.handle_id or '<none>'}",
             f"Block: {found.block} (affinity {found.block_affinity or '<none>'})"]
    if found.attributes:
        lines.append("Attributes:")
        lines += [f"  {k}: {v}" for k, v in sorted(found.attributes.items())]
    else:
        lines.append("No attributes defined")
    return "\n".join(lines) + "\n"


def _percent(n: int, total: int) -> str:
    return f"{n:.5g} ({100 * n / total:.0f}%)" if total else f"{n}"


def usage_table(pools: list[report.PoolUsage], show_blocks: bool) -> str:
    headers = ["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS RESERVED", "IPS FREE"]
    if show_blocks:
        headers.append("AFFINITY")
    rows = []
    for p in pools:
        for u in ([p.pool] if p.pool else []) + (p.blocks if show_blocks else []):
            row = [u.kind, u.cidr, f"{u.total:.5g}", _percent(u.in_use, u.total), _percent(u.reserved, u.total),
                   _percent(u.free, u.total)]
            if show_blocks:
                row.append(u.affinity or ("" if u.kind == "IP Pool" else "<none>"))
            rows.append(row)
    return boxed(headers, rows, right=[2, 3, 4, 5])


# --- check --------------------------------------------------------------------------------------------------


@ipam.command()
@click.option("-o", "--output", "outfile", default=None, help="Write the report as JSON to this file.")
@click.option("--show-all-ips", is_flag=True, help="Print every address checked.")
@click.option("--show-problem-ips", is_flag=True, help="Print every address with a problem.")
@click.pass_obj
def check(ctx: _Ctx, outfile: str | None, show_all_ips: bool, show_problem_ips: bool) -> None:
    """Check IPAM's records against the workloads and nodes that own addresses."""
    r = _run(ctx, lambda c: c.check())
    click.echo(check_text(r, show_all_ips, show_problem_ips or show_all_ips), nl=False)
    if outfile:
        try:
            Path(outfile).write_text(json.dumps(r.to_json(__version__), indent=2) + "\n")
        except OSError as e:
            fail(f"Failed to write the report to {outfile}: {e.strerror}")


def check_text(r: report.CheckReport, show_all: bool, show_problems: bool) -> str:
    out = ["Checking IPAM for inconsistencies...", "",
           f"Found {r.blocks} IPAM blocks; they record {len(r.allocations)} allocations."]
    if show_all:
        out += [f"  {ip} {a.handle_id} {dict(a.attributes)}" for ip, allocs in r.allocations.items() for a in allocs]
    out += [f"Found {len(r.active_pools)} active IP pools: {', '.join(r.active_pools) or '-'}.",
            f"Workloads and nodes are using {len(r.owners)} IPs.", ""]

    def section(title: str, items: list[Any], detail: Callable[[Any], str]) -> None:
        out.append(f"{title}: {len(items)}")
        if show_problems:
            out.extend(f"  {detail(i)}" for i in items)

    def owners(ip: str) -> str:
        return f"{ip} in use by {', '.join(r.owners.get(ip, []))}"

    def held(ip: str) -> str:
        return f"{ip} held by {'; '.join(f'{a.handle_id} {dict(a.attributes)}' for a in r.allocations[ip])}"

    section("IPs allocated in IPAM but not in use (leaked)", r.leaked, held)
    section("IPs in use in an active IP pool but not allocated in IPAM", r.in_use_not_allocated, owners)
    section("IPs in use outside every active IP pool", r.not_in_pool, owners)
    section("IPs with more than one owner", r.multiple_owners, owners)
    section("IPs allocated in more than one block", r.duplicate_allocations, held)
    section("Handles with no allocation", r.leaked_handles, str)
    section("Handles used in blocks with no handle record", r.missing_handles, str)
    section("Handles whose counts disagree with the blocks", r.handle_mismatches, str)
    section("Blocks affine to a node that does not exist", r.orphan_blocks, lambda b: f"{b['block']} ({b['node']})")
    section("Block affinities of nodes that do not exist", r.stale_affinities,
            lambda a: f"{a['node']}: {a['block']} ({a['state']})")
    section("Blocks that cannot be read", r.corrupt_blocks, str)
    out.append(f"Check complete; found {r.problems} problems.")
    if r.leaked:
        out.append("Addresses allocated moments ago may not have their workload yet: check again before releasing.")
    return "\n".join(out) + "\n"


# --- release ------------------------------------------------------------------------------------------------


@ipam.command()
@click.option("--ip", "ip_text", default=None, help="The address to release.")
@click.option("--from-report", "report_file", default=None,
              help="Release the leaked addresses of an `ipam check -o` report (those still held as it saw them).")
@click.pass_obj
def release(ctx: _Ctx, ip_text: str | None, report_file: str | None) -> None:
    """Release an address (or the leaked addresses of a check report)."""
    if (ip_text is None) == (report_file is None):
        fail("Give one of --ip or --from-report")
    if ip_text is not None:
        addr = _address(ip_text)
        if _run(ctx, lambda c: c.release_ips([addr])):
            fail(f"IP address {addr} is not assigned")
        click.echo(f"Successfully released IP address {addr}")
        return
    assert report_file is not None
    expected = _leaked_from(report_file)
    missed = _run(ctx, lambda c: c.release_ips(list(expected), expected))
    for addr in missed:
        click.echo(f"Skipped {addr}: no longer allocated as the report recorded it", err=True)
    click.echo(f"Released {len(expected) - len(missed)} of {len(expected)} leaked IP address(es)")


def _leaked_from(path: str) -> dict[Any, Expected]:
    try:
        doc = json.loads(Path(path).read_text())
        return {ipaddress.ip_address(e["ip"]): Expected(e.get("handle_id"), e.get("sequence"))
                for e in doc["leakedIPs"]}
    except OSError as e:
        fail(f"Failed to read {path}: {e.strerror}")
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{path} is not an `ipam check -o` report: {e}")


# --- configure ----------------------------------------------------------------------------------------------


@ipam.command()
@click.option("--strictaffinity", type=click.Choice(["true", "false"]), required=True,
              help="Never borrow addresses from other nodes' blocks.")
@click.option("--max-blocks-per-host", type=click.IntRange(min=0), default=None,
              help="Blocks a node may claim (0: no limit).")
@click.pass_obj
def configure(ctx: _Ctx, strictaffinity: str, max_blocks_per_host: int | None) -> None:
    """Change the IPAM configuration."""
    strict = strictaffinity == "true"

    async def op(c: IPAMClient) -> None:
        cur = await c.get_config()
        limit = cur.max_blocks_per_host if max_blocks_per_host is None else max_blocks_per_host
        await c.set_config(IPAMConfig(strict, cur.auto_allocate_blocks, limit, cur.extra))

    _run(ctx, op)
    click.echo(f"Successfully set StrictAffinity to: {strictaffinity}")
    if max_blocks_per_host is not None:
        click.echo(f"Successfully set MaxBlocksPerHost to: {max_blocks_per_host}")


# --- delete node --------------------------------------------------------------------------------------------


async def remove_pool_data(store: ResourceStore, name: str) -> int:
    """Before an IPPool is deleted (as Calico does): every host lets go of its blocks in the pool (empty ones are
    deleted, so nothing keeps announcing them). Addresses still allocated stay, in blocks no host holds. Returns
    how many blocks were let go of. Raises NotFound when there is no such pool."""
    pool = await store.get("IPPool", name)
    net = ipaddress.ip_network(pool.spec.cidr)  # type: ignore[attr-defined]
    ipam = IPAMClient(store.kv)
    kvs, _ = await store.kv.list(host_affinity_prefix())
    released = 0
    for item in kvs:
        parsed = parse_affinity_key(item.key)
        if parsed is None:
            continue
        node, cidr = parsed
        block = ipaddress.ip_network(cidr)
        if block.version == net.version and block.subnet_of(net):  # type: ignore[arg-type]
            try:
                await ipam.release_affinity(node, cidr)
            except IPAMError as e:
                raise StoreError(f"IPPool({name}): releasing block {cidr} of {node} failed: {e}") from e
            released += 1
    return released


async def remove_node_data(store: ResourceStore, name: str) -> NodeRelease:
    """Before a Node is deleted (as Calico does with an etcd datastore): its WorkloadEndpoints and HostEndpoints
    go, and so do its addresses and block affinities. Raises NotFound when there is no such node."""
    await store.get("Node", name)
    for kind in (WorkloadEndpoint.KIND, HostEndpoint.KIND):
        for ep in await store.list(kind):
            if ep.spec.node == name:  # type: ignore[attr-defined]
                await store.delete(kind, ep.metadata.name, ep.metadata.namespace)
    try:
        return await IPAMClient(store.kv).release_node(name)
    except IPAMError as e:
        raise StoreError(f"Node({name}): releasing its addresses and block affinities failed: {e}") from e

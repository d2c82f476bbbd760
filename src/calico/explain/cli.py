"""The command-line face of an explanation, shared by `calicoctl explain` and `calico-lab explain`.

Enters: the flow options as typed and an open `KVStore`. Leaves: the tree (or JSON with `-o json`) on stdout
and the exit status: 0 allow, 1 deny, 2 error (message on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console

from calico.datastore.keys import FELIX_STATUS_PREFIX
from calico.datastore.kv import KVError, KVStore
from calico.explain.counters import attach_counters
from calico.explain.explain import explain
from calico.explain.flow import Headers, parse_headers, parse_host_endpoint, parse_party
from calico.explain.render import print_explanation
from calico.explain.snapshot import read

EXIT_ALLOW, EXIT_DENY, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True)
class FlowOptions:
    protocol: str
    port: int | None
    src_port: int | None
    icmp_type: int | None
    icmp_code: int | None
    output: str
    timing: bool
    counters: bool = False
    via: str | None = None  # hep:NAME the flow arrives through
    leaves_via: str | None = None  # hep:NAME a forwarded flow leaves through


def flow_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed([
        click.option("--protocol", "protocol", default="tcp", show_default=True,
                     help="tcp, udp, sctp, icmp, icmpv6 or a number."),
        click.option("--port", type=int, default=None, help="Destination port."),
        click.option("--src-port", type=int, default=None, help="Source port."),
        click.option("--icmp-type", type=int, default=None),
        click.option("--icmp-code", type=int, default=None),
        click.option("-o", "--output", type=click.Choice(["tree", "json"]), default="tree", show_default=True),
        click.option("--timing", is_flag=True, help="Print how long the read and the explanation took (stderr)."),
        click.option("--counters", is_flag=True,
                     help="Show what each rule's kernel counter counted, from every host's Felix status."),
        click.option("--via", "via", default=None, metavar="hep:NAME",
                     help="The host endpoint whose interface the flow arrives through: its untracked, preDNAT and "
                          "(to the host) normal or (forwarded) applyOnForward policy. Default: the --dst host "
                          "endpoint's, when --dst is one."),
        click.option("--leaves-via", "leaves_via", default=None, metavar="hep:NAME",
                     help="The host endpoint whose interface a forwarded flow leaves through: its applyOnForward "
                          "egress policy."),
    ]):
        fn = opt(fn)
    return fn


def options(**kw: Any) -> FlowOptions:
    return FlowOptions(kw["protocol"], kw["port"], kw["src_port"], kw["icmp_type"], kw["icmp_code"], kw["output"],
                       kw["timing"], kw["counters"], kw.get("via"), kw.get("leaves_via"))


def error(message: str) -> int:
    click.echo(f"explain: {message}", err=True)
    return EXIT_ERROR


async def run(kv: KVStore, src: str, dst: str, opts: FlowOptions) -> int:
    try:
        src_party, dst_party = parse_party(src, "--src"), parse_party(dst, "--dst")
        via = parse_host_endpoint(opts.via, "--via")
        leaves = parse_host_endpoint(opts.leaves_via, "--leaves-via")
        headers: Headers = parse_headers(opts.protocol, opts.port, opts.src_port, opts.icmp_type, opts.icmp_code)
    except ValueError as e:
        return error(str(e))
    t0 = time.perf_counter()
    try:
        snapshot = await read(kv)
    except KVError as e:
        return error(f"reading the datastore: {e}")
    t1 = time.perf_counter()
    try:
        result = explain(snapshot, src_party, dst_party, headers, via, leaves)
    except (LookupError, ValueError) as e:
        return error(str(e))
    t2 = time.perf_counter()
    if opts.counters:
        try:
            kvs, _ = await kv.list(FELIX_STATUS_PREFIX)
        except KVError as e:
            return error(f"reading Felix's counters: {e}")
        attach_counters(result, ((item.key, item.value) for item in kvs))
    if opts.output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        # Not a terminal (a pipe, a file): wide enough that no rule is cut.
        print_explanation(result, Console(highlight=False, width=None if sys.stdout.isatty() else 400))
    if opts.timing:
        click.echo(f"read {len(snapshot.values)} keys in {(t1 - t0) * 1e3:.1f} ms; explained in "
                   f"{(t2 - t1) * 1e3:.1f} ms", err=True)
    sys.stdout.flush()
    return EXIT_ALLOW if result.verdict == "allow" else EXIT_DENY

"""`calicoctl flows`: this host's recent flow log records, filtered, as a table or as JSON lines.

In: Felix's flow log files (`--dir`, default $FELIX_FLOWLOGSFILEDIRECTORY, else /var/log/calico/flowlogs), or,
with `--follow`, the records Felix streams on its socket (`--socket`, default $FELIX_FLOWLOGSSOCKETPATH) as they
are flushed. Filters (all given ones must hold): `--action allow|deny`, `--namespace NS` (either end),
`--endpoint NAME` (either end: `name` or `namespace/name`), `--policy P` (any step of the trace: `name`,
`namespace/name` or `tier/namespace/name`). Out: the last `--last N` matching records, oldest first: a table
(START, ACTION, PROTO, SOURCE, DEST, PACKETS, BYTES, DECIDED BY) or, with `-o json`, the records' JSON lines. A
line that is not a record is reported on stderr and skipped. Exit 1 when the files or the socket cannot be read.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from collections import deque
from collections.abc import Iterable, Iterator

import click

from calico.calicoctl.tables import boxed
from calico.flowlogs.outputs import read_lines
from calico.flowlogs.records import FlowRecord, from_json

DEFAULT_DIR = "/var/log/calico/flowlogs"
HEADERS = ("START", "ACTION", "PROTO", "SOURCE", "DEST", "PACKETS", "BYTES", "DECIDED BY")


def _end(ip: str, port: int, name: str, namespace: str) -> str:
    who = f"{namespace}/{name}" if namespace else name
    where = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return f"{who} {where}" if who else where


def decided_by(r: FlowRecord) -> str:
    """The step that decided: the deny, else the last allow (the receiver's ingress)."""
    steps = [s for s in r.policies if s.action == ("deny" if r.action == "deny" else "allow")]
    if not steps:
        return "-"
    s = steps[0] if r.action == "deny" else steps[-1]
    what = f"{s.tier}/{s.policy}" if s.kind == "policy" else s.policy if s.kind == "profile" else s.kind
    if s.kind == "tier_default":
        what = f"{s.tier} default"
    rule = f" rule {s.rule}" if s.rule is not None else ""
    pending = f"; pending {r.pending_action}" if r.pending_action is not None else ""
    return f"{s.direction} {what}{rule} ({s.action}){pending}"


def table(records: Iterable[FlowRecord]) -> str:
    rows = [
        [datetime.datetime.fromtimestamp(r.start_time, datetime.UTC).strftime("%H:%M:%S"), r.action, r.proto,
         _end(r.source_ip, r.source_port, r.source.name, r.source.namespace),
         _end(r.dest_ip, r.dest_port, r.dest.name, r.dest.namespace), str(r.packets), str(r.bytes), decided_by(r)]
        for r in records
    ]
    return boxed(HEADERS, rows, right=(5, 6)) if rows else "No flows found.\n"


def parse(lines: Iterable[str]) -> Iterator[tuple[str, FlowRecord]]:
    for line in lines:
        try:
            yield line, from_json(line)
        except ValueError as e:
            click.echo(f"Skipping a line that is not a flow record: {e}", err=True)


def _socket_lines(path: str) -> Iterator[str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            yield from (ln.decode(errors="replace") for ln in lines if ln.strip())


@click.command()
@click.option("--dir", "directories", multiple=True,
              help="Felix's flow log directory (several: their records merged by time, e.g. a lab's hosts).")
@click.option("--socket", "socket_path", default=None, help="Felix's flow log socket (with --follow).")
@click.option("--follow", is_flag=True, help="Stream records from the socket as Felix flushes them.")
@click.option("--action", type=click.Choice(["allow", "deny"]), default=None)
@click.option("--namespace", default=None, help="Either end's namespace.")
@click.option("--endpoint", default=None, help="Either end: NAME or NAMESPACE/NAME.")
@click.option("--policy", default=None, help="A policy in the trace: NAME, NAMESPACE/NAME or TIER/NAMESPACE/NAME.")
@click.option("--last", "last", type=int, default=50, show_default=True, help="How many records (0: all).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def flows(directories: tuple[str, ...], socket_path: str | None, follow: bool, action: str | None,
          namespace: str | None, endpoint: str | None, policy: str | None, last: int, output: str) -> None:
    """Recent flows on this host, with the policy that decided each."""

    def wanted(lines: Iterable[str]) -> Iterator[tuple[str, FlowRecord]]:
        return ((ln, r) for ln, r in parse(lines) if r.matches(action, namespace, endpoint, policy))

    if follow:
        path = socket_path or os.environ.get("FELIX_FLOWLOGSSOCKETPATH")
        if not path:
            click.echo("--follow needs --socket (or FELIX_FLOWLOGSSOCKETPATH)", err=True)
            sys.exit(1)
        try:
            for line, record in wanted(_socket_lines(path)):
                click.echo(line if output == "json" else table([record]), nl=output == "json")
        except OSError as e:
            click.echo(f"Cannot read flow logs from {path}: {e.strerror or e}", err=True)
            sys.exit(1)
        return
    dirs = directories or (os.environ.get("FELIX_FLOWLOGSFILEDIRECTORY") or DEFAULT_DIR,)
    for d in dirs:
        if not os.path.isdir(d):
            click.echo(f"Cannot read flow logs: {d} is not a directory", err=True)
            sys.exit(1)
    found = [item for d in dirs for item in wanted(read_lines(d))]
    if len(dirs) > 1:
        found.sort(key=lambda item: (item[1].start_time, item[1].end_time))  # stable: each file's order kept
    kept: deque[tuple[str, FlowRecord]] = deque(found, maxlen=last or None)
    if output == "json":
        for line, _ in kept:
            click.echo(line)
    else:
        click.echo(table(r for _, r in kept), nl=False)

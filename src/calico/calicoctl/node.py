"""`calicoctl node status`: this host's BGP sessions, read from BIRD's control socket, as calicoctl prints them.

In: `--bird-socket` (default `$CALICO_RUN_DIR/bird.ctl`, else `/var/run/calico/bird.ctl`). Out: "Calico process
is running." and a table per family (PEER ADDRESS, PEER TYPE, STATE, SINCE, INFO), or "Calico process is not
running." and exit code 1 when nothing answers on the socket ("running" here means this host's BIRD answers).
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping, Sequence

import click

from calico.bgp.bird import CONTROL_SOCKET, DEFAULT_RUN_DIR, BirdError, BirdUnavailable
from calico.bgp.sessions import BGPSession, bird_sessions
from calico.calicoctl.tables import boxed

HEADERS = ("PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO")


def default_socket(env: Mapping[str, str]) -> str:
    return os.path.join(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR, CONTROL_SOCKET)


def since_text(since: str, today: datetime.date) -> str:
    """BIRD's "YYYY-MM-DD hh:mm:ss": the time when it is today, else the date (as calicoctl shows it)."""
    day, _, time = since.partition(" ")
    if not time:
        return since
    return time.partition(".")[0] if day == today.isoformat() else day


def format_status(sessions: Sequence[BGPSession], today: datetime.date) -> str:
    out = ["Calico process is running.", ""]
    for version in (4, 6):
        rows = [
            [s.peer_address, s.peer_type, s.state, since_text(s.since, today), s.info]
            for s in sorted(sessions, key=lambda s: (s.peer_type, s.peer_address))
            if s.version == version
        ]
        out.append(f"IPv{version} BGP status")
        out.append(boxed(HEADERS, rows) if rows else f"No IPv{version} peers found.\n")
    return "\n".join(out)


@click.group()
def node() -> None:
    """This Calico node."""


@node.command()
@click.option(
    "--bird-socket",
    default=None,
    help="BIRD's control socket (default $CALICO_RUN_DIR/bird.ctl, else /var/run/calico/bird.ctl).",
)
def status(bird_socket: str | None) -> None:
    """This node's BGP sessions, from BIRD."""
    path = bird_socket or default_socket(os.environ)
    try:
        sessions = bird_sessions(path)
    except BirdUnavailable as e:
        click.echo("Calico process is not running.")
        click.echo(f"Error executing command: {e}", err=True)
        sys.exit(1)
    except BirdError as e:
        click.echo(f"Error executing command: {e}", err=True)
        sys.exit(1)
    click.echo(format_status(sessions, datetime.date.today()), nl=False)

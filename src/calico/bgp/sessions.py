"""This node's BGP sessions as data, read from BIRD (`show protocols all`).

In: a BIRD control socket (or any `BirdControl`). Out: `BGPSession`s (peer address, peer type, family, BIRD's
protocol state, since, info, ASes), for `calicoctl node status`, health probes and the lab's status table.
`parse_sessions` is the pure part: BIRD's reply in, sessions out; protocols other than BGP are left out.

The peer type comes from the protocol name the renderer gave (`Mesh_`, `Global_`, `Node_`; see
`calico.bgp.peers.PEER_TYPES`); a BGP protocol named otherwise is "other".
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from calico.bgp.bird import BirdControl, BirdReply, BirdSocket
from calico.bgp.peers import PEER_TYPES

__all__ = ["BGPSession", "bird_sessions", "parse_sessions", "read_sessions"]

_PROTOCOL_LINE = 1002  # one line per protocol: name, proto, table, state, since, info
_DETAIL_LINE = 1006  # `show protocols all`: indented "Key: value" details of the protocol above
_SINCE = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?|\S+)\s*(.*)\Z")


@dataclass(frozen=True, slots=True)
class BGPSession:
    name: str  # BIRD's protocol name
    peer_address: str
    peer_type: str  # node-to-node mesh | global | node specific | other
    version: int  # 4 | 6
    state: str  # BIRD's protocol state: up, start, down, ...
    since: str  # when it entered that state, as BIRD prints it
    info: str  # "Established", or where the session is stuck and why ("Active  Socket: ...")
    bgp_state: str = ""  # the BGP state alone ("Established", "Active", "Connect", "Idle", ...)
    neighbor_as: int | None = None
    local_as: int | None = None
    description: str = ""

    @property
    def established(self) -> bool:
        return self.bgp_state == "Established" or (not self.bgp_state and self.info.startswith("Established"))


def parse_sessions(reply: BirdReply) -> list[BGPSession]:
    sessions = []
    current: dict[str, str] | None = None
    for code, text in [*reply.lines, (_PROTOCOL_LINE, "")]:
        if code == _DETAIL_LINE and current is not None:
            key, sep, value = text.strip().partition(":")
            if sep:
                current.setdefault(key.strip(), value.strip())
            continue
        if code != _PROTOCOL_LINE:
            continue
        if current is not None:
            sessions.append(_session(current))
        parts = text.split(None, 4)
        current = None
        if len(parts) >= 4 and parts[1] == "BGP":
            m = _SINCE.match(parts[4] if len(parts) == 5 else "")
            since, info = (m.group(1), m.group(2).strip()) if m else ("", "")
            current = {"name": parts[0], "state": parts[3], "since": since, "info": info}
    return sessions


def _session(fields: dict[str, str]) -> BGPSession:
    name = fields["name"]
    prefix, _, rest = name.partition("_")
    address = fields.get("Neighbor address") or _address_from_name(rest)
    return BGPSession(
        name=name,
        peer_address=address,
        peer_type=PEER_TYPES.get(prefix, "other"),
        version=6 if ":" in address else 4,
        state=fields["state"],
        since=fields["since"],
        info=" ".join(fields["info"].split()),
        bgp_state=fields.get("BGP state", ""),
        neighbor_as=_int(fields.get("Neighbor AS")),
        local_as=_int(fields.get("Local AS")),
        description=fields.get("Description", ""),
    )


def _address_from_name(rest: str) -> str:
    """`198_19_1_2` -> 198.19.1.2, `fd00_ff_1__2` -> fd00:ff:1::2 (a port suffix dropped)."""
    rest = rest.partition("_port_")[0]
    return rest.replace("_", ".") if rest.count("_") == 3 and "__" not in rest else rest.replace("_", ":")


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


async def read_sessions(control: BirdControl) -> list[BGPSession]:
    return parse_sessions(await control.command("show protocols all"))


def bird_sessions(socket_path: str | Path, timeout: float = 5.0) -> list[BGPSession]:
    """The sessions of the BIRD behind `socket_path`, for callers without an event loop.

    Raises `calico.bgp.bird.BirdUnavailable` when BIRD is not running there."""
    return asyncio.run(read_sessions(BirdSocket(socket_path, timeout)))

"""A small client of BIRD's control socket, for the health probes: the one place calico-node talks to BIRD.

In: the socket path (`$CALICO_RUN_DIR/bird.ctl`). Out: `BirdControl.command()` (the reply lines, with their
codes), `show_protocols()` (one `BirdProtocol` per row of `show protocols`) and `graceful_restart_pending()`.
Raises `BirdError` when BIRD does not answer (no socket, refused, timeout, an error reply).

The protocol: on connect BIRD greets with `0001 BIRD <version> ready.`; a command is one line; each reply
line is a 4-digit code followed by `-` (more follows) or a space (the last line), or a space alone (one more
line of the previous code). Codes from 8000 up are errors.
(When calico.bgp lands with its own client, this module is the one to switch over to it.)
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["BirdControl", "BirdError", "BirdProtocol", "parse_protocols"]

_LINE = re.compile(r"^(\d{4})([ -])(.*)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BirdError(Exception):
    """BIRD did not answer as expected; the message says what happened."""


@dataclass(frozen=True)
class BirdProtocol:
    name: str
    proto: str  # "BGP", "Device", "Kernel", "Static", ...
    table: str
    state: str  # "up", "start", "down", ...
    since: str
    info: str  # for BGP: "Established", "Active", "Connect", ... with any detail after it

    @property
    def established(self) -> bool:
        return self.info.split(" ", 1)[0] == "Established"


def parse_protocols(lines: list[tuple[int, str]]) -> list[BirdProtocol]:
    """Rows of a `show protocols` reply (code 1002 and its continuation lines; the 2002 header skipped)."""
    out = []
    for code, text in lines:
        if code != 1002:
            continue
        words = text.split()
        if len(words) < 4:
            continue
        rest = words[4:]
        since_words = 2 if len(rest) >= 2 and _DATE.match(rest[0]) else 1
        out.append(BirdProtocol(words[0], words[1], words[2], words[3], " ".join(rest[:since_words]),
                                " ".join(rest[since_words:])))
    return out


class BirdControl:
    def __init__(self, path: Path | str, timeout: float = 2.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def command(self, cmd: str) -> list[tuple[int, str]]:
        """Run one command; its reply lines as (code, text), continuation lines carrying their code."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.timeout)
                s.connect(self.path)
                reader = s.makefile("r", encoding="utf-8", errors="replace")
                greeting = self._reply(reader)
                if not greeting or greeting[0][0] != 1:
                    raise BirdError(f"unexpected greeting on {self.path}: {greeting!r}")
                s.sendall(cmd.encode() + b"\n")
                reply = self._reply(reader)
        except OSError as e:
            raise BirdError(f"BIRD does not answer on {self.path}: {e.strerror or e}") from None
        if reply and reply[-1][0] >= 8000:
            raise BirdError(f"BIRD refused {cmd!r}: {reply[-1][1]}")
        return reply

    @staticmethod
    def _reply(reader: TextIO) -> list[tuple[int, str]]:
        lines: list[tuple[int, str]] = []
        code = 0
        for raw in reader:
            line = raw.rstrip("\n")
            m = _LINE.match(line)
            if m:
                code = int(m.group(1))
                lines.append((code, m.group(3)))
                if m.group(2) == " ":
                    return lines
            elif line.startswith(" "):
                lines.append((code, line[1:]))
            else:
                raise BirdError(f"unexpected reply line {line!r}")
        raise BirdError("BIRD closed the connection mid-reply")

    def show_protocols(self) -> list[BirdProtocol]:
        return parse_protocols(self.command("show protocols"))

    def graceful_restart_pending(self) -> bool:
        """True while BIRD is still recovering from a graceful restart (its routes not yet final)."""
        return any("Graceful restart recovery in progress" in text for _, text in self.command("show status"))

"""What the health probes ask BIRD, through `calico.bgp` (the one home of BIRD's control socket).

In: the socket path (`$CALICO_RUN_DIR/bird.ctl`). Out: `BirdStatusSocket.sessions()` (BGP sessions as
`calico.bgp.sessions.BGPSession`) and `graceful_restart_pending()`; both raise `calico.bgp.bird.BirdError`
(its subclass `BirdUnavailable` when nothing answers).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from calico.bgp.bird import BirdError, BirdSocket
from calico.bgp.sessions import BGPSession, bird_sessions

__all__ = ["BirdError", "BirdStatusSocket"]


class BirdStatusSocket:
    def __init__(self, path: Path | str, timeout: float = 2.0) -> None:
        self.path = str(path)
        self.timeout = timeout

    def sessions(self) -> list[BGPSession]:
        return bird_sessions(self.path, self.timeout)

    def graceful_restart_pending(self) -> bool:
        """True while BIRD is still recovering from a graceful restart (its routes not yet final)."""
        reply = asyncio.run(BirdSocket(self.path, self.timeout).command("show status"))
        return "Graceful restart recovery in progress" in reply.text()

"""Stand-ins for BIRD in unit tests.

* `FakeBird`: an in-memory `BirdControl` (records commands; can be down, or refuse `configure`).
* `FakeBirdServer`: a thread serving BIRD's control protocol on a real unix socket under /tmp, answering each
  command with canned raw reply text (as BIRD writes it: numbered lines) or closing the connection mid-reply.
"""

from __future__ import annotations

import shutil
import socketserver
import tempfile
import threading
from pathlib import Path

from calico.bgp.bird import BirdCommandFailed, BirdReply, BirdUnavailable


class FakeBird:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.running = True
        self.refuse: str | None = None  # a configure error text

    async def command(self, command: str) -> BirdReply:
        if not self.running:
            raise BirdUnavailable("fake BIRD is not running")
        self.commands.append(command)
        if command == "configure" and self.refuse:
            raise BirdCommandFailed(command, 8002, self.refuse)
        return BirdReply(((2, "Reading configuration from bird.cfg"), (3, "Reconfigured")))


class FakeBirdServer:
    def __init__(
        self, replies: dict[str, str], greeting: str = "0001 BIRD 2.0.12 ready.\n", hang_up: frozenset[str] = frozenset()
    ) -> None:
        self.replies = replies
        self.hang_up = hang_up  # commands answered, then the connection closed
        self.greeting = greeting
        self.received: list[str] = []
        self.directory = Path(tempfile.mkdtemp(prefix="cbgp", dir="/tmp"))  # short: unix socket paths < 108 bytes
        self.path = self.directory / "bird.ctl"
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(fake.greeting.encode())
                for raw in self.rfile:
                    command = raw.decode().strip()
                    fake.received.append(command)
                    self.wfile.write(fake.replies.get(command, "9001 syntax error\n").encode())
                    if command in fake.hang_up:
                        return  # the connection closes here

        self.server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)

"""Putting a rendered configuration in place: only when it changed, only after BIRD accepted it.

In: rendered text. Out: the file `bird.cfg` (mode 0600: it may hold passwords) and a `configure` sent to BIRD;
an `Outcome` says which happened.

The text goes to `bird.cfg.new` first and `bird -p -c` checks it. Refused, it becomes `bird.cfg.rejected`
(kept for inspection, the reason logged) and the running file stays as it was. Accepted, it replaces `bird.cfg`
atomically (a stale `.rejected` goes) and BIRD re-reads it. When BIRD is not running yet the file is all it
needs (the supervisor starts BIRD on it); a later `apply` still sends the `configure`, so a BIRD that started
while the file changed catches up.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from calico.bgp.bird import BirdControl, BirdError, BirdUnavailable, check_config, configure

__all__ = ["ConfigWriter", "Outcome"]

log = logging.getLogger(__name__)

Checker = Callable[[Path], Awaitable[str | None]]


class Outcome(enum.Enum):
    UNCHANGED = "unchanged"
    RELOADED = "reloaded"  # written (or already there) and BIRD re-read it
    WRITTEN = "written"  # written; BIRD is not running, it reads the file when it starts
    REJECTED = "rejected"  # refused by BIRD's check: the running configuration stays
    RELOAD_FAILED = "reload-failed"  # written, but BIRD would not re-read it (it keeps what it runs)


class ConfigWriter:
    def __init__(self, path: str | Path, control: BirdControl, check: Checker = check_config) -> None:
        self.path = Path(path)
        self.staged_path = self.path.with_name(self.path.name + ".new")
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")
        self.control = control
        self.check = check
        self._reload_pending = False  # the file is newer than what BIRD was last told to read

    def current(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    async def apply(self, text: str) -> Outcome:
        if self.current() != text:
            why = await self._check(text)
            if why is not None:
                os.replace(self.staged_path, self.rejected_path)
                log.error("BIRD refused the rendered configuration (kept as %s): %s", self.rejected_path, why)
                return Outcome.REJECTED
            os.replace(self.staged_path, self.path)
            self.rejected_path.unlink(missing_ok=True)
            self._reload_pending = True
            log.info("wrote %s", self.path)
        elif not self._reload_pending:
            return Outcome.UNCHANGED
        try:
            answer = await configure(self.control)
        except BirdUnavailable:
            return Outcome.WRITTEN
        except BirdError as e:
            log.error("BIRD did not re-read %s: %s", self.path, e)
            return Outcome.RELOAD_FAILED
        self._reload_pending = False
        log.info("BIRD re-read %s: %s", self.path, answer.replace("\n", "; "))
        return Outcome.RELOADED

    async def _check(self, text: str) -> str | None:
        """Stage the text beside the live file and have BIRD parse it; None when it passes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.staged_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            return await self.check(self.staged_path)
        except BirdError as e:
            return f"cannot check it: {e}"

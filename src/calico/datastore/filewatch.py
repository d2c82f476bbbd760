"""Wake-ups on file changes (Linux inotify), so watchers of a shared file need not wait for their next poll.

In: a file path and a callback. Out: the callback, called on the event loop soon after anything writes the file.
A hint only: it never carries data, and where inotify is unavailable (other OS, a filesystem without it, out of
watches) `start()` returns False and the caller keeps polling.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

_IN_MODIFY = 0x00000002
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000


class FileChangeNotifier:
    def __init__(self, path: str, on_change: Callable[[], None]) -> None:
        self.path = path
        self.on_change = on_change
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """Begin watching (call on the event loop); False when inotify cannot watch the file."""
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), "inotify_init1")
            if libc.inotify_add_watch(fd, os.fsencode(self.path), _IN_MODIFY) < 0:
                err = ctypes.get_errno()
                os.close(fd)
                raise OSError(err, f"inotify_add_watch {self.path}")
        except (OSError, AttributeError) as e:
            log.debug("no inotify for %s (%s): polling only", self.path, e)
            return False
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._readable)
        return True

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            while os.read(self._fd, 4096):  # drain; the events themselves do not matter
                pass
        except BlockingIOError:
            pass
        except OSError:
            self.stop()
            return
        self.on_change()

    def stop(self) -> None:
        if self._fd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

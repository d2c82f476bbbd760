"""Another process's commit wakes an embedded-store watcher at once (inotify on the WAL file), not at its
next poll; polling stays the fallback when inotify cannot be had."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from calico.datastore import embedded
from calico.datastore.embedded import EmbeddedKV
from calico.datastore.filewatch import FileChangeNotifier


async def _first_event_after_put(path: Path) -> float:
    watcher_kv = await EmbeddedKV.open(path)
    writer_kv = await EmbeddedKV.open(path)  # a separate connection: what another process's write looks like
    try:
        rev = await watcher_kv.revision()
        stream = watcher_kv.watch("/calico/", rev + 1)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.3)  # the watcher has polled, found nothing and is waiting
        started = time.monotonic()
        await writer_kv.put("/calico/x", b"1")
        events = await asyncio.wait_for(first, 5)
        assert events[0].key == "/calico/x"
        return time.monotonic() - started
    finally:
        await stream.aclose()
        await writer_kv.close()
        await watcher_kv.close()


async def test_commit_by_another_connection_wakes_the_watcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "POLL_MIN", 2.0)  # polls far apart: only the wake-up can be quick
    monkeypatch.setattr(embedded, "POLL_MAX", 2.0)
    monkeypatch.setattr(embedded, "POLL_MAX_NOTIFIED", 2.0)
    assert await _first_event_after_put(tmp_path / "s.db") < 0.5


async def _idle_polls(path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> int:
    polls = 0
    real = EmbeddedKV._poll

    def counting(self: EmbeddedKV, *args: object) -> object:
        nonlocal polls
        polls += 1
        return real(self, *args)

    monkeypatch.setattr(EmbeddedKV, "_poll", counting)
    kv = await EmbeddedKV.open(path)
    try:
        stream = kv.watch("/calico/", await kv.revision() + 1)
        pending = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(seconds)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await stream.aclose()
    finally:
        await kv.close()
    return polls


async def test_idle_watcher_with_inotify_polls_rarely(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _idle_polls(tmp_path / "s.db", monkeypatch, 1.0) <= 20  # 250 ms apart once backed off


async def test_idle_watcher_without_inotify_keeps_polling_often(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FileChangeNotifier, "start", lambda self: False)
    assert await _idle_polls(tmp_path / "s.db", monkeypatch, 1.0) >= 50  # 5 ms apart: nothing else would tell it


async def test_without_inotify_polling_still_delivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FileChangeNotifier, "start", lambda self: False)
    monkeypatch.setattr(embedded, "POLL_MIN", 0.2)
    monkeypatch.setattr(embedded, "POLL_MAX", 0.2)
    assert await _first_event_after_put(tmp_path / "s.db") < 2.0

"""Putting a config in place: real `bird -p` checks, a fake BIRD control socket (the real one: tests/bgp)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from calico.bgp.bird import BirdError
from calico.bgp.writer import ConfigWriter, Outcome
from tests.unit.bgp.builders import inputs, render_checked, three_nodes
from tests.unit.bgp.fakebird import FakeBird

GOOD = render_checked(inputs(three_nodes())).text
OTHER = render_checked(inputs(three_nodes(), blocks={"198.18.1.0/26"})).text
BAD = GOOD + "\nprotocol bgp Broken {\n"


@pytest.fixture
def bird() -> FakeBird:
    return FakeBird()


@pytest.fixture
def writer(tmp_path: Path, bird: FakeBird) -> ConfigWriter:
    return ConfigWriter(tmp_path / "confd" / "bird.cfg", bird)


async def test_write_then_configure_only_on_change(writer: ConfigWriter, bird: FakeBird) -> None:
    assert await writer.apply(GOOD) is Outcome.RELOADED
    assert writer.path.read_text() == GOOD
    assert stat.S_IMODE(writer.path.stat().st_mode) == 0o600  # it may hold BGP passwords
    assert bird.commands == ["configure"]
    assert await writer.apply(GOOD) is Outcome.UNCHANGED
    assert bird.commands == ["configure"]
    assert await writer.apply(OTHER) is Outcome.RELOADED
    assert bird.commands == ["configure", "configure"]
    assert not writer.staged_path.exists()


async def test_rejected_text_never_replaces_the_running_one(writer: ConfigWriter, bird: FakeBird) -> None:
    await writer.apply(GOOD)
    assert await writer.apply(BAD) is Outcome.REJECTED
    assert writer.path.read_text() == GOOD
    assert writer.rejected_path.read_text() == BAD
    assert bird.commands == ["configure"]  # BIRD was not asked to read anything new
    assert await writer.apply(OTHER) is Outcome.RELOADED
    assert not writer.rejected_path.exists()  # a good render clears the stale rejected one


async def test_first_render_rejected_writes_nothing(writer: ConfigWriter) -> None:
    assert await writer.apply(BAD) is Outcome.REJECTED
    assert not writer.path.exists()


async def test_bird_not_running_yet(writer: ConfigWriter, bird: FakeBird) -> None:
    bird.running = False
    assert await writer.apply(GOOD) is Outcome.WRITTEN
    assert writer.path.read_text() == GOOD
    assert await writer.apply(GOOD) is Outcome.WRITTEN  # still nobody to tell
    bird.running = True  # the supervisor started it, maybe while the file changed: it is told once more
    assert await writer.apply(GOOD) is Outcome.RELOADED
    assert await writer.apply(GOOD) is Outcome.UNCHANGED
    assert bird.commands == ["configure"]


async def test_reload_refused_is_retried(writer: ConfigWriter, bird: FakeBird) -> None:
    bird.refuse = "Reconfiguration rejected"
    assert await writer.apply(GOOD) is Outcome.RELOAD_FAILED
    bird.refuse = None
    assert await writer.apply(GOOD) is Outcome.RELOADED
    assert bird.commands == ["configure", "configure"]


async def test_check_that_cannot_run_is_a_rejection(tmp_path: Path, bird: FakeBird) -> None:
    async def broken(path: Path) -> str | None:
        raise BirdError("cannot run bird -p: no such file")

    writer = ConfigWriter(tmp_path / "bird.cfg", bird, check=broken)
    assert await writer.apply(GOOD) is Outcome.REJECTED
    assert not writer.path.exists()

"""The supervisor with real child processes (small shell commands): restart with back-off, immediate restart,
start conditions, clean stop with SIGTERM then SIGKILL, pid files, and no orphans when the supervisor dies."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.node.backoff import Backoff
from calico.node.children import ChildSpec
from calico.node.supervisor import Supervisor, describe_exit


def fast() -> Backoff:
    return Backoff(initial=0.05, maximum=0.2, reset_after=5)


def sh(name: str, script: str, **kw: object) -> ChildSpec:
    return ChildSpec(name, ("/bin/sh", "-c", script), {"PATH": os.environ["PATH"]}, **kw)  # type: ignore[arg-type]


async def until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


async def stopped(sup: Supervisor, task: asyncio.Task[None], timeout: float = 5.0) -> None:
    sup.request_stop()
    await asyncio.wait_for(task, timeout)


async def test_a_failing_child_is_restarted_with_growing_delays(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor([sh("flaky", "exit 3")], backoff=fast)
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(sup.run())
        await until(lambda: sup.starts["flaky"] >= 5, what="five starts")
        await stopped(sup, task)
    delays = [r.getMessage().rsplit("restarting it in ", 1)[1] for r in caplog.records if "restarting it in" in r.message]
    assert delays[:4] == ["0.1s", "0.1s", "0.2s", "0.2s"]  # 0.05, 0.1, 0.2, 0.2 (capped), printed to 0.1s
    assert "flaky exited with code 3 after" in caplog.text


async def test_a_restart_code_restarts_at_once() -> None:
    slow = lambda: Backoff(initial=30, maximum=30)  # noqa: E731 - would take minutes without the restart code
    sup = Supervisor([sh("felix", "exit 129", restart_now_codes=frozenset({129}))], backoff=slow)
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.starts["felix"] >= 5, what="five immediate restarts")
    await stopped(sup, task)


async def test_a_killed_child_is_restarted_and_its_pid_file_follows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "run" / "c.pid"
    sup = Supervisor([sh("c", "exec sleep 30", pid_file=pid_file)], backoff=fast)
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(sup.run())
        await until(lambda: "c" in sup.pids and pid_file.exists(), what="start")
        first = sup.pids["c"]
        assert int(pid_file.read_text()) == first
        os.kill(first, signal.SIGKILL)
        await until(lambda: sup.pids.get("c", first) != first, what="restart")
        await until(lambda: pid_file.exists() and int(pid_file.read_text()) == sup.pids["c"], what="new pid file")
        second = sup.pids["c"]
        await stopped(sup, task)
    assert "c was killed by SIGKILL after" in caplog.text
    assert not alive(second) and not pid_file.exists()


async def test_a_child_waits_for_its_start_condition(tmp_path: Path) -> None:
    flag = tmp_path / "bird.cfg"
    sup = Supervisor([sh("bird", "exec sleep 30", start_when=flag.exists, waiting_for="bird.cfg")],
                     backoff=fast, poll_interval=0.02)
    task = asyncio.create_task(sup.run())
    await asyncio.sleep(0.3)
    assert sup.starts["bird"] == 0
    flag.write_text("")
    await until(lambda: "bird" in sup.pids, what="start once the file exists")
    await stopped(sup, task)
    assert sup.starts["bird"] == 1


async def test_stop_sends_sigterm_to_the_group_then_sigkill(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    trapped = tmp_path / "trapped"  # the stubborn shell has ignored SIGTERM (else a quick stop beats its trap)
    sup = Supervisor(
        [sh("polite", "sleep 30 & wait"), sh("stubborn", f"trap '' TERM; touch {trapped}; sleep 30 & wait")],
        backoff=fast, stop_grace=0.5,
    )
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(sup.run())
        await until(lambda: len(sup.pids) == 2 and trapped.exists(), what="both started")
        pids = dict(sup.pids)
        groups = {name: os.getpgid(pid) for name, pid in pids.items()}
        assert groups == pids  # each child leads its own process group
        started = time.monotonic()
        await stopped(sup, task)
    assert time.monotonic() - started < 3
    assert f"stubborn (pid {pids['stubborn']}) still runs 0s after SIGTERM; sending SIGKILL" in caplog.text
    assert f"stopped polite (pid {pids['polite']}): it was killed by SIGTERM" in caplog.text
    await until(lambda: not any(group_exists(g) for g in pids.values()), timeout=3, what="groups gone")


def group_exists(pgid: int) -> bool:
    """Any live (not zombie) process in the group: the grandchildren (sleep) must go with their group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


async def test_a_missing_program_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    spec = ChildSpec("ghost", ("/nonexistent/calico-ghost",), {})
    sup = Supervisor([spec], backoff=fast)
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(sup.run())
        await until(lambda: caplog.text.count("cannot start ghost") >= 2, what="two attempts")
        await stopped(sup, task)
    assert "ghost did not start after" in caplog.text


def test_describe_exit() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-15) == "was killed by SIGTERM"
    assert describe_exit(None) == "did not start"


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        from calico.node.children import ChildSpec
        from calico.node.supervisor import Supervisor
        spec = ChildSpec("c", ("/bin/sleep", "30"), {{}}, pid_file=Path({str(pid_file)!r}))
        asyncio.run(Supervisor([spec]).run())
    """)
    sup = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        child = int(pid_file.read_text())
        assert alive(child)
    finally:
        sup.kill()
        sup.wait()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child), "the child outlived its killed supervisor"


async def test_a_held_child_stays_stopped_until_the_hold_goes_then_starts_at_once(tmp_path: Path) -> None:
    hold = tmp_path / "hold" / "c"
    slow = lambda: Backoff(initial=30, maximum=30)  # noqa: E731 - a back-off would make the restart take 30 s
    sup = Supervisor([sh("c", "exec sleep 30", hold_file=hold)], backoff=slow, poll_interval=0.02)
    task = asyncio.create_task(sup.run())
    await until(lambda: "c" in sup.pids, what="start")
    first = sup.pids["c"]
    hold.parent.mkdir(parents=True)
    hold.touch()
    os.kill(first, signal.SIGKILL)
    await until(lambda: "c" not in sup.pids, what="the stop")
    await asyncio.sleep(0.3)
    assert "c" not in sup.pids and sup.starts["c"] == 1  # held: not restarted
    hold.unlink()
    await until(lambda: "c" in sup.pids, timeout=2.0, what="the start after the hold went")
    assert sup.pids["c"] != first and sup.starts["c"] == 2
    await stopped(sup, task)


async def test_a_child_with_a_log_file_writes_there(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "c.log"
    sup = Supervisor([sh("c", "echo out; echo err >&2; exec sleep 30", log_file=log_file)], backoff=fast)
    task = asyncio.create_task(sup.run())
    await until(lambda: log_file.exists() and "err" in log_file.read_text(), what="the child's output")
    await stopped(sup, task)
    assert log_file.read_text().split() == ["out", "err"]


async def test_a_graceful_stop_is_asked_first_and_signals_follow_when_it_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    asked = tmp_path / "asked"

    async def polite() -> None:
        asked.touch()  # the child leaves on its own once it sees this (BIRD's `graceful restart`)

    async def broken() -> None:
        raise ConnectionRefusedError("no control socket")

    sup = Supervisor([
        sh("polite", f"while [ ! -e {asked} ]; do sleep 0.02; done; exit 0", graceful_stop=polite),
        sh("deaf", "exec sleep 30", graceful_stop=broken),
    ], backoff=fast, stop_grace=2.0)
    with caplog.at_level(logging.INFO):
        task = asyncio.create_task(sup.run())
        await until(lambda: len(sup.pids) == 2, what="both started")
        await stopped(sup, task)
    assert "stopped polite" in caplog.text and "gracefully: it exited with code 0" in caplog.text
    assert "deaf" in caplog.text and "did not stop gracefully (no control socket); sending SIGTERM" in caplog.text
    assert "stopped deaf" in caplog.text and "killed by SIGTERM" in caplog.text

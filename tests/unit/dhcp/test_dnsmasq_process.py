"""DnsmasqProcess's supervision with a stand-in child (no sockets: it only writes its pid file and notes signals):
start waits for the pid file, SIGHUP reaches it, an exit is followed by a new start, start() replaces the
running one, a leftover of an earlier agent is stopped only while it runs our command line. (dnsmasq itself
runs under the agent in tests/dhcp.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from calico.dhcp.dnsmasq import DnsmasqProcess, write_files
from calico.dhcp.render import Paths
from tests.felix.util import wait_until

STAND_IN = r"""
import os, signal, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
notes = args["notes"]
def note(text):
    with open(notes, "a") as f:
        f.write(text + "\n")
signal.signal(signal.SIGHUP, lambda *_: note("hup"))
signal.signal(signal.SIGTERM, lambda *_: (note("term"), sys.exit(0)))
time.sleep(float(args.get("delay", "0")))
with open(args["pid-file"], "w") as f:
    f.write(str(os.getpid()))
note("started")
deadline = time.monotonic() + float(args.get("exit-after", "60"))
while time.monotonic() < deadline:
    time.sleep(0.01)
sys.exit(3)
"""


def argv(paths: Paths, *extra: str) -> list[str]:
    script = paths.state_dir / "stand_in.py"
    script.write_text(STAND_IN)
    return [sys.executable, str(script), f"--pid-file={paths.pid}", f"--notes={paths.state_dir / 'notes'}", *extra]


def notes(paths: Paths) -> list[str]:
    path = paths.state_dir / "notes"
    return path.read_text().split() if path.exists() else []


async def test_start_reload_restart_and_stop(tmp_path: Path):
    paths = Paths(tmp_path)
    proc = DnsmasqProcess(paths, restart_delay=0.05)
    await proc.start(argv(paths, "--delay=0.2"))
    assert notes(paths) == ["started"]  # start() returned only once the pid file was written
    first = proc.pid
    assert first is not None and int(paths.pid.read_text()) == first
    assert proc.reload()
    await wait_until(lambda: notes(paths) == ["started", "hup"], what="SIGHUP noted")
    await proc.start(argv(paths))  # a restart: the old one is stopped (SIGTERM), a new one runs
    assert proc.pid not in (None, first) and notes(paths) == ["started", "hup", "term", "started"]
    await proc.stop()
    assert proc.pid is None and not proc.reload()
    assert notes(paths)[-1] == "term"


async def test_a_child_that_exits_is_started_again(tmp_path: Path):
    paths = Paths(tmp_path)
    proc = DnsmasqProcess(paths, restart_delay=0.05)
    try:
        await proc.start(argv(paths, "--exit-after=0.1"))
        await wait_until(lambda: notes(paths).count("started") >= 3, timeout=10, what="restarts after exits")
        assert proc.starts >= 3
    finally:
        await proc.stop()


async def test_a_missing_binary_is_retried_not_raised(tmp_path: Path):
    proc = DnsmasqProcess(Paths(tmp_path), restart_delay=0.05)
    await proc.start([str(tmp_path / "no-such-dnsmasq")])
    assert proc.pid is None and proc.starts == 0
    await proc.stop()


async def test_a_leftover_is_stopped_only_when_it_runs_our_command_line(tmp_path: Path):
    paths = Paths(tmp_path)
    leftover = subprocess.Popen([*argv(paths), "dnsmasq"])  # "dnsmasq" in its command line, our pid file
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "dnsmasq"])
    try:
        await wait_until(lambda: paths.pid.exists(), what="leftover's pid file")
        proc = DnsmasqProcess(paths, restart_delay=0.05)
        paths.pid.write_text(str(other.pid))  # a pid file naming something else: left alone
        await proc.start(argv(paths))
        assert other.poll() is None
        await proc.stop()
        paths.pid.write_text(str(leftover.pid))
        await proc.start(argv(paths))
        assert leftover.wait(5) == 0 and proc.pid != leftover.pid
        await proc.stop()
    finally:
        for p in (leftover, other):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def test_files_are_replaced_whole_and_readable(tmp_path: Path):
    paths = Paths(tmp_path)
    write_files(paths, "a\n", "b\n")
    write_files(paths, "c\n", "d\n")
    assert (paths.hosts.read_text(), paths.opts.read_text()) == ("c\n", "d\n")
    assert paths.hosts.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "opts"]

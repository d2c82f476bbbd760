"""The control-socket client against a fake BIRD on a real unix socket (framing, errors), and `bird -p`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.bgp.bird import (
    BirdCommandFailed,
    BirdError,
    BirdSocket,
    BirdUnavailable,
    bird_command,
    check_config,
    configure,
    graceful_restart,
)
from tests.unit.bgp.builders import data_file
from tests.unit.bgp.fakebird import FakeBirdServer

STATUS = (
    "1000-BIRD 2.0.12\n1011-Router ID is 198.19.0.1\n Hostname is h1\n Current server time is 2026-12-04 18:33:08.484\n"
    "0013 Daemon is up and running\n"
)


@pytest.fixture
def server() -> Iterator[FakeBirdServer]:
    srv = FakeBirdServer({
        "show status": STATUS,
        "show protocols all": data_file("show_protocols_all.txt").read_text(),
        "configure": "0002-Reading configuration from /etc/calico/confd/config/bird.cfg\n0003 Reconfigured\n",
        "graceful restart": "0025 Graceful restart requested\n",
        "hang up": "1000-half a reply\n",
        "stall": "1000-half a reply\n",
    }, hang_up=frozenset({"hang up"}))
    try:
        yield srv
    finally:
        srv.close()


async def test_reply_lines_with_codes_and_continuations(server: FakeBirdServer) -> None:
    reply = await BirdSocket(server.path).command("show status")
    assert reply.lines == (
        (1000, "BIRD 2.0.12"),
        (1011, "Router ID is 198.19.0.1"),
        (1011, "Hostname is h1"),
        (1011, "Current server time is 2026-12-04 18:33:08.484"),
        (13, "Daemon is up and running"),
    )
    assert reply.with_code(1011)[0] == "Router ID is 198.19.0.1"
    assert server.received == ["show status"]


async def test_long_reply_read_to_its_last_line(server: FakeBirdServer) -> None:
    reply = await BirdSocket(server.path).command("show protocols all")
    assert reply.lines[0] == (2002, "Name       Proto      Table      State  Since         Info")
    assert reply.lines[-1] == (0, "")
    assert len(reply.lines) == len(data_file("show_protocols_all.txt").read_text().splitlines())


async def test_configure_and_graceful_restart(server: FakeBirdServer) -> None:
    assert (await configure(BirdSocket(server.path))).endswith("Reconfigured")
    assert await graceful_restart(BirdSocket(server.path)) == "Graceful restart requested"


async def test_error_code_raises(server: FakeBirdServer) -> None:
    with pytest.raises(BirdCommandFailed, match="9001 syntax error") as err:
        await BirdSocket(server.path).command("show bogus")
    assert err.value.code == 9001


async def test_connection_closed_mid_reply(server: FakeBirdServer) -> None:
    with pytest.raises(BirdError, match="connection closed in the middle of a reply"):
        await BirdSocket(server.path).command("hang up")


async def test_no_final_line_times_out(server: FakeBirdServer) -> None:
    with pytest.raises(BirdError, match=r"no answer to 'stall' in 0\.2s"):
        await BirdSocket(server.path, timeout=0.2).command("stall")


async def test_nothing_listening() -> None:
    with pytest.raises(BirdUnavailable, match="No such file or directory"):
        await BirdSocket("/tmp/cbgp-no-such-dir/bird.ctl").command("show status")


async def test_check_config(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.cfg", tmp_path / "bad.cfg"
    good.write_text("router id 198.19.0.1;\nprotocol device {}\n")
    bad.write_text("router id 198.19.0.1;\nprotocol bgp {\n")
    assert await check_config(good) is None
    assert "bad.cfg:" in (await check_config(bad) or "")
    with pytest.raises(BirdError, match="cannot run"):
        await check_config(good, bird="/nonexistent/bird")


def test_bird_command_line() -> None:
    assert bird_command("/etc/calico/confd/config/bird.cfg", "/var/run/calico/bird.ctl") == [
        "bird", "-R", "-f", "-c", "/etc/calico/confd/config/bird.cfg", "-s", "/var/run/calico/bird.ctl",
    ]

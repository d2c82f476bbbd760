"""BIRD's `show protocols all` (captured from BIRD 2.0.12 running the renderer's config) as `BGPSession`s, and
`calicoctl node status` printing them."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from calico.bgp.bird import BirdReply
from calico.bgp.sessions import BGPSession, parse_sessions
from calico.calicoctl.main import cli
from calico.calicoctl.node import default_socket, format_status, since_text
from calico.calicoctl.tables import boxed
from tests.unit.bgp.builders import data_file
from tests.unit.bgp.fakebird import FakeBirdServer

CAPTURED_ON = datetime.date(2026, 12, 4)


def captured() -> BirdReply:
    lines: list[tuple[int, str]] = []
    code = 0
    for line in data_file("show_protocols_all.txt").read_text().splitlines():
        if line[:4].isdigit():
            code = int(line[:4])
            lines.append((code, line[5:]))
        else:
            lines.append((code, line[1:]))
    return BirdReply(tuple(lines))


def test_parse_only_bgp_protocols_with_their_details() -> None:
    sessions = parse_sessions(captured())
    assert sessions == [
        BGPSession(
            name="Global_198_19_0_254", peer_address="198.19.0.254", peer_type="global", version=4, state="start",
            since="2026-12-04 18:58:04", info="Active Socket: Connection refused", bgp_state="Active",
            neighbor_as=65000, local_as=64512, description="BGPPeer(tor)",
        ),
        BGPSession(
            name="Mesh_198_19_0_2", peer_address="198.19.0.2", peer_type="node-to-node mesh", version=4, state="up",
            since="2026-12-04 18:58:06", info="Established", bgp_state="Established", neighbor_as=64512,
            local_as=64512, description="node-to-node mesh",
        ),
        BGPSession(
            name="Mesh_fd00_b9__2", peer_address="fd00:b9::2", peer_type="node-to-node mesh", version=6, state="up",
            since="2026-12-04 18:58:06", info="Established", bgp_state="Established", neighbor_as=64512,
            local_as=64512, description="node-to-node mesh",
        ),
    ]
    assert [s.established for s in sessions] == [False, True, True]


def test_parse_short_listing_and_foreign_names() -> None:
    reply = BirdReply((
        (2002, "Name       Proto      Table      State  Since         Info"),
        (1002, "Node_fd00_b9__fe_port_1790 BGP        ---        up     10:01:02.123  Established"),
        (1002, "upstream   BGP        ---        start  10:01:02.123  Connect"),
        (1002, "kernel4    Kernel     master4    up     10:01:02.123"),
        (0, ""),
    ))
    assert [(s.peer_address, s.peer_type, s.since, s.info, s.established) for s in parse_sessions(reply)] == [
        ("fd00:b9::fe", "node specific", "10:01:02.123", "Established", True),
        ("", "other", "10:01:02.123", "Connect", False),
    ]


def test_since_as_calicoctl_shows_it() -> None:
    assert since_text("2026-12-04 18:58:05", CAPTURED_ON) == "18:58:05"
    assert since_text("2026-12-04 18:58:05.123", CAPTURED_ON) == "18:58:05"
    assert since_text("2026-12-03 18:58:05", CAPTURED_ON) == "2026-12-03"
    assert since_text("18:58:05", CAPTURED_ON) == "18:58:05"


def test_status_text() -> None:
    assert format_status(parse_sessions(captured()), CAPTURED_ON) == (
        "Calico process is running.\n"
        "\n"
        "IPv4 BGP status\n"
        "+--------------+-------------------+-------+----------+-----------------------------------+\n"
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |               INFO                |\n"
        "+--------------+-------------------+-------+----------+-----------------------------------+\n"
        "| 198.19.0.254 | global            | start | 18:58:04 | Active Socket: Connection refused |\n"
        "| 198.19.0.2   | node-to-node mesh | up    | 18:58:06 | Established                       |\n"
        "+--------------+-------------------+-------+----------+-----------------------------------+\n"
        "\n"
        "IPv6 BGP status\n"
        "+--------------+-------------------+-------+----------+-------------+\n"
        "| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |    INFO     |\n"
        "+--------------+-------------------+-------+----------+-------------+\n"
        "| fd00:b9::2   | node-to-node mesh | up    | 18:58:06 | Established |\n"
        "+--------------+-------------------+-------+----------+-------------+\n"
    )
    assert format_status([], CAPTURED_ON).endswith("IPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\n"
                                                     "No IPv6 peers found.\n")


def test_boxed_centres_headers() -> None:
    assert boxed(["AB", "C"], [["x", "long"]]) == (
        "+----+------+\n| AB |  C   |\n+----+------+\n| x  | long |\n+----+------+\n"
    )


def test_default_socket() -> None:
    assert default_socket({}) == "/var/run/calico/bird.ctl"
    assert default_socket({"CALICO_RUN_DIR": "/tmp/x"}) == "/tmp/x/bird.ctl"


@pytest.fixture
def server() -> Iterator[FakeBirdServer]:
    srv = FakeBirdServer({"show protocols all": data_file("show_protocols_all.txt").read_text()})
    try:
        yield srv
    finally:
        srv.close()


def test_calicoctl_node_status(server: FakeBirdServer) -> None:
    result = CliRunner().invoke(cli, ["node", "status", "--bird-socket", str(server.path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Calico process is running.\n\nIPv4 BGP status\n+---")
    assert "| fd00:b9::2   | node-to-node mesh | up    |" in result.output
    assert server.received == ["show protocols all"]


def test_calicoctl_node_status_without_bird() -> None:
    result = CliRunner().invoke(cli, ["node", "status", "--bird-socket", "/tmp/cbgp-none/bird.ctl"])
    assert result.exit_code == 1
    assert "Calico process is not running." in result.output

"""Health probes: Felix over HTTP (a fake and a real loopback server), BIRD over its control socket (parsing real
BIRD 2 output, a fake BIRD speaking the socket protocol), and the exit codes of `calico-node -<probe>`."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from calico.bgp.sessions import BGPSession
from calico.node import main as node_main
from calico.node.bird_probe import BirdError, BirdStatusSocket
from calico.node.health import bird_live, bird_ready, felix_probe, run_checks

# `show protocols all` (shortened) and `show status` as BIRD 2.0.12 answers them on its socket.
SHOW_PROTOCOLS = (
    b"2002-Name       Proto      Table      State  Since         Info\n"
    b"1002-device1    Device     ---        up     18:33:05.571  \n"
    b"1006-\n"
    b"1002-Mesh_198_18_0_2 BGP        ---        start  18:33:05.571  Active        Socket: Connection refused\n"
    b"1006-  BGP state:          Active\n"
    b"     Neighbor address: 198.18.0.2\n"
    b"1002-Mesh_198_18_0_3 BGP        ---        up     2026-12-04 18:33:06  Established   \n"
    b"1006-  BGP state:          Established\n"
    b"     Neighbor address: 198.18.0.3\n"
    b"0000 \n"
)
SHOW_STATUS = (
    b"1000-BIRD 2.0.12\n1011-Router ID is 198.18.0.1\n Hostname is vm\n"
    b" Current server time is 2026-12-04 18:33:06.505\n0013 Daemon is up and running\n"
)


class FakeBird:
    def __init__(self, protocols: list[BGPSession] | None = None, gr: bool = False, down: bool = False) -> None:
        self.protocols, self.gr, self.down = protocols or [], gr, down

    def sessions(self) -> list[BGPSession]:
        if self.down:
            raise BirdError("BIRD does not answer on /x/bird.ctl: Connection refused")
        return self.protocols

    def graceful_restart_pending(self) -> bool:
        if self.down:
            raise BirdError("BIRD does not answer on /x/bird.ctl: Connection refused")
        return self.gr


def bgp(name: str, info: str) -> BGPSession:
    return BGPSession(name, name.split("_", 1)[1].replace("_", "."), "node-to-node mesh", 4,
                      "up" if info == "Established" else "start", "now", info, info.split(" ", 1)[0])


def test_bird_probes_against_a_fake() -> None:
    assert bird_live(FakeBird()).ok and bird_ready(FakeBird()).ok  # no peers: ready
    assert bird_ready(FakeBird([bgp("Mesh_198_19_1_2", "Established")])).ok
    r = bird_ready(FakeBird([bgp("Mesh_198_19_1_2", "Established"), bgp("Node_198_19_1_9", "Active"),
                             bgp("Global_198_19_9_9", "")]))
    assert not r.ok
    assert r.reason == "BIRD is not ready: BGP not established with Node_198_19_1_9 (Active), Global_198_19_9_9 (start)"
    r = bird_ready(FakeBird(gr=True))
    assert not r.ok and "graceful restart recovery in progress" in r.reason
    r = bird_live(FakeBird(down=True))
    assert not r.ok and r.reason == "BIRD is not live: BIRD does not answer on /x/bird.ctl: Connection refused"
    assert not bird_ready(FakeBird(down=True)).ok


def test_felix_probes_against_a_fake_fetch() -> None:
    seen: list[str] = []

    def get(url: str) -> int:
        seen.append(url)
        return 200 if url.endswith("/liveness") else 503

    assert felix_probe("live", "localhost", 9099, get).ok
    r = felix_probe("ready", "localhost", 9099, get)
    assert not r.ok and r.reason == "Felix is not ready: http://localhost:9099/readiness answered 503"
    assert felix_probe("live", "::1", 9099, get).ok and seen[-1] == "http://[::1]:9099/liveness"

    def refused(url: str) -> int:
        raise ConnectionRefusedError(111, "Connection refused")

    r = felix_probe("live", "localhost", 9099, refused)
    assert not r.ok and r.reason.startswith("Felix is not live: no answer from http://localhost:9099/liveness")


class FelixHealth(http.server.BaseHTTPRequestHandler):
    ready = False

    def do_GET(self) -> None:
        ok = self.path == "/liveness" or (self.path == "/readiness" and FelixHealth.ready)
        self.send_response(200 if ok else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def felix_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FelixHealth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class BirdSocket:
    """A fake BIRD on a unix socket: the greeting, then canned replies per command."""

    def __init__(self, path: Path, replies: dict[bytes, bytes]) -> None:
        self.path, self.replies = path, replies
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
                cmd = conn.makefile("rb").readline().strip()
                conn.sendall(self.replies.get(cmd, b"9001 syntax error\n"))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() in the serving thread
        self.sock.close()
        self.thread.join(5)
        self.path.unlink()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cn", dir="/tmp") as d:  # unix socket paths must be short
        yield Path(d)


def test_bird_status_over_the_socket(short_dir: Path) -> None:
    bird = BirdSocket(short_dir / "bird.ctl", {b"show protocols all": SHOW_PROTOCOLS, b"show status": SHOW_STATUS})
    try:
        control = BirdStatusSocket(short_dir / "bird.ctl")
        sessions = control.sessions()
        assert [(p.name, p.established) for p in sessions] == [("Mesh_198_18_0_2", False), ("Mesh_198_18_0_3", True)]
        assert not control.graceful_restart_pending()
        r = bird_ready(control)
        assert not r.ok and "Mesh_198_18_0_2 (Active Socket: Connection refused)" in r.reason
    finally:
        bird.close()
    with pytest.raises(BirdError, match=r"bird.ctl"):
        BirdStatusSocket(short_dir / "bird.ctl").sessions()


def test_probe_exit_codes(
    short_dir: Path, felix_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELIX_HEALTHPORT", str(felix_port))
    monkeypatch.setenv("FELIX_HEALTHHOST", "127.0.0.1")
    monkeypatch.setenv("CALICO_RUN_DIR", str(short_dir))
    FelixHealth.ready = False
    assert node_main.main(["-felix-live"]) == 0
    assert node_main.main(["-felix-ready"]) == 1
    assert capsys.readouterr().err == (
        f"calico/node is not ready: Felix is not ready: http://127.0.0.1:{felix_port}/readiness answered 503\n"
    )
    FelixHealth.ready = True
    assert node_main.main(["-felix-ready"]) == 0
    assert node_main.main(["-bird-live"]) == 1
    assert "calico/node is not live: BIRD is not live: BIRD control socket " in capsys.readouterr().err
    established = SHOW_PROTOCOLS.replace(b"start  18:33:05.571  Active        Socket: Connection refused",
                                         b"up     18:33:05.571  Established")
    established = established.replace(b"BGP state:          Active", b"BGP state:          Established")
    bird = BirdSocket(short_dir / "bird.ctl", {b"show protocols all": established, b"show status": SHOW_STATUS})
    try:
        assert node_main.main(["-bird-live", "-bird-ready", "-felix-live", "-felix-ready"]) == 0
        assert node_main.main(["-bird6-live", "-bird6-ready"]) == 0  # Calico's BIRD 1.x names, one BIRD 2 here
        assert capsys.readouterr().err == ""
    finally:
        bird.close()


def test_probes_do_not_mix_with_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert node_main.main(["-felix", "-felix-ready"]) == 1
    assert "cannot be combined" in capsys.readouterr().err


def test_run_checks_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown check 'bird6-ready'"):
        run_checks(["bird6-ready"], "localhost", 1, FakeBird())

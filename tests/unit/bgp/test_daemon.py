"""The renderer daemon over a real embedded datastore, with real `bird -p` checks and a fake BIRD socket."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from calico.bgp.daemon import BGPRenderer, DaemonConfig, main
from calico.bgp.secrets import SecretsDir
from calico.bgp.writer import ConfigWriter, Outcome
from calico.datastore.embedded import EmbeddedKV
from calico.datastore.keys import affinity_key, kind_prefix
from calico.datastore.store import ResourceStore
from calico.resources import Resource
from tests.unit.bgp.builders import bgp_config, node, peer, pool
from tests.unit.bgp.fakebird import FakeBird


async def eventually(what: str, cond: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Harness:
    def __init__(self, kv: EmbeddedKV, tmp_path: Path) -> None:
        self.kv = kv
        self.store = ResourceStore(kv)
        self.bird = FakeBird()
        self.config = tmp_path / "confd" / "bird.cfg"
        self.secrets = tmp_path / "secrets"
        self.renderer = BGPRenderer(
            kv, "h1", ConfigWriter(self.config, self.bird), SecretsDir(self.secrets), debounce=0.05,
            refresh_interval=0.3,
        )

    async def apply(self, *resources: Resource) -> None:
        for res in resources:
            await self.store.apply(res)

    def text(self) -> str:
        return self.config.read_text() if self.config.exists() else ""


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    kv = await EmbeddedKV.open(str(tmp_path / "calico.db"))
    try:
        yield Harness(kv, tmp_path)
    finally:
        await kv.close()


@pytest.fixture
async def running(harness: Harness) -> AsyncIterator[Harness]:
    await harness.apply(
        pool("pool4", "198.18.0.0/16"), node("h1", "198.19.0.1/24"), node("h2", "198.19.0.2/24"),
    )
    await harness.kv.put(affinity_key("h1", "198.18.1.0/26"), b'{"state": "confirmed", "deleted": false}')
    task = asyncio.create_task(harness.renderer.run())
    try:
        await eventually("the first render", lambda: "Mesh_198_19_0_2" in harness.text())
        yield harness
        assert not task.done(), "the daemon stopped"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_follows_the_datastore(running: Harness) -> None:
    h = running
    assert "route 198.18.1.0/26 blackhole;" in h.text()
    assert h.bird.commands == ["configure"]
    await h.apply(peer("tor", peerIP="198.19.0.254", asNumber=65000))
    await eventually("the new peer", lambda: "protocol bgp Global_198_19_0_254" in h.text())
    await h.kv.put(affinity_key("h1", "198.18.1.64/26"), b'{"state": "confirmed", "deleted": false}')
    await eventually("the new block", lambda: "route 198.18.1.64/26 blackhole;" in h.text())
    await h.store.delete("Node", "h2")
    await eventually("h2 gone", lambda: "Mesh_198_19_0_2" not in h.text())
    assert h.bird.commands == ["configure"] * 4


async def test_a_burst_is_rendered_once(running: Harness) -> None:
    h = running
    before = len(h.bird.commands)
    await h.apply(*(peer(f"p{i}", peerIP=f"198.19.9.{i}", asNumber=65000) for i in range(1, 9)))
    await eventually("all eight peers", lambda: "Global_198_19_9_8" in h.text())
    await asyncio.sleep(0.2)
    assert len(h.bird.commands) - before <= 2


async def test_bad_data_never_stops_it(running: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h = running
    await h.apply(peer("tor", peerIP="198.19.0.254", asNumber=65000))
    await eventually("the peer", lambda: "Global_198_19_0_254" in h.text())
    with caplog.at_level(logging.WARNING, logger="calico.bgp"):
        await h.kv.put(kind_prefix("bgppeers") + "tor", b"{garbage")  # corrupt in the datastore
        await h.apply(peer("no-as", peerIP="198.19.0.253"))  # valid resource, unusable peering
        await eventually("the bad peer dropped", lambda: "Global_198_19_0_254" not in h.text())
        assert "Mesh_198_19_0_2" in h.text()
        assert "Global_198_19_0_253" not in h.text()
        await h.store.delete("Node", "h1")  # this node gone: nothing can be rendered
        await eventually("the render refused", lambda: "Node(h1) does not exist" in caplog.text)
    assert "bgppeers/tor" in caplog.text and "BGPPeer(no-as): peerIP 198.19.0.253 needs an asNumber" in caplog.text
    assert "Mesh_198_19_0_2" in h.text()  # BIRD keeps what it runs
    await h.apply(node("h1", "198.19.0.1/24"))
    await asyncio.sleep(0.2)
    assert "Mesh_198_19_0_2" in h.text()


async def test_password_files_are_read_again(running: Harness) -> None:
    h = running
    ref = {"secretKeyRef": {"name": "bgp", "key": "tor"}}
    await h.apply(peer("tor", peerIP="198.19.0.254", asNumber=65000, password=ref))
    await asyncio.sleep(0.2)
    assert "Global_198_19_0_254" not in h.text()  # no password yet: not peered
    (h.secrets / "bgp").mkdir(parents=True)
    (h.secrets / "bgp" / "tor").write_text("s3cret\n")
    await eventually("the periodic refresh reads it", lambda: 'password "s3cret";' in h.text())


async def test_run_once(harness: Harness) -> None:
    await harness.apply(node("h1", "198.19.0.1/24"), node("h2", "198.19.0.2/24"), bgp_config("default"))
    assert await harness.renderer.run_once() is Outcome.RELOADED
    assert "Mesh_198_19_0_2" in harness.text()
    assert await harness.renderer.run_once() is Outcome.UNCHANGED


async def test_run_once_without_this_node(harness: Harness) -> None:
    assert await harness.renderer.run_once() is None
    assert not harness.config.exists()


def test_config_from_env() -> None:
    cfg = DaemonConfig.from_env({"NODENAME": "h1"})
    assert (cfg.config_path, cfg.socket_path, cfg.secrets_dir, cfg.interface_prefixes, cfg.log_level) == (
        Path("/etc/calico/confd/config/bird.cfg"), Path("/var/run/calico/bird.ctl"),
        Path("/etc/calico/bgp-secrets"), None, "INFO",  # None: Felix's InterfacePrefix from the datastore
    )
    cfg = DaemonConfig.from_env({"NODENAME": "h1", "CALICO_CONFD_DIR": "/c", "CALICO_RUN_DIR": "/r",
                                 "FELIX_INTERFACEPREFIX": "cali,tap", "BGP_LOGSEVERITYSCREEN": "fatal"})
    assert (str(cfg.config_path), str(cfg.socket_path), cfg.interface_prefixes, cfg.log_level) == (
        "/c/bird.cfg", "/r/bird.ctl", ("cali", "tap"), "CRITICAL",
    )
    with pytest.raises(ValueError, match="FELIX_INTERFACEPREFIX"):
        DaemonConfig.from_env({"FELIX_INTERFACEPREFIX": 'ca"li'})
    with pytest.raises(ValueError, match="BGP_LOGSEVERITYSCREEN"):
        DaemonConfig.from_env({"BGP_LOGSEVERITYSCREEN": "loud"})


def test_main_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "calico.db"

    async def seed() -> None:
        kv = await EmbeddedKV.open(str(db))
        try:
            await ResourceStore(kv).apply(node("h1", "198.19.0.1/24"))
            await ResourceStore(kv).apply(node("h2", "198.19.0.2/24"))
        finally:
            await kv.close()

    asyncio.run(seed())
    for var, value in {"NODENAME": "h1", "DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": str(db),
                       "CALICO_CONFD_DIR": str(tmp_path), "CALICO_RUN_DIR": "/tmp/cbgp-none"}.items():
        monkeypatch.setenv(var, value)
    assert main(["--once"]) == 0  # BIRD not running: written, for the supervisor to start it on
    assert "Mesh_198_19_0_2" in (tmp_path / "bird.cfg").read_text()
    monkeypatch.setenv("FELIX_INTERFACEPREFIX", "bad prefix!")
    assert main(["--once"]) == 1
    assert "FELIX_INTERFACEPREFIX" in capsys.readouterr().err

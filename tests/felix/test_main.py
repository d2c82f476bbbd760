"""The calico-felix entry point: exit codes, SIGTERM, choosing a missing dataplane backend."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from calico.felix import driver as drv
from calico.felix import main as felix_main
from calico.felix.config import FelixConfig
from calico.felix.daemon import EXIT_FATAL, EXIT_OK
from calico.felix.driver import DriverUnavailable, RecordingDriver, load_driver_factory
from tests.felix.util import wait_until

ENV = {"FELIX_FELIXHOSTNAME": "node1", "FELIX_REPORTINGINTERVALSECS": "0"}


async def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    env = {"CALICO_EMBEDDED_PATH": str(tmp_path / "kv.db")}
    driver = RecordingDriver()
    task = asyncio.create_task(
        felix_main.run(FelixConfig.load(ENV, None), env, driver_factory=lambda c, m: driver)
    )
    await wait_until(lambda: bool(driver.batches) or task.done(), what="first apply")
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 10) == EXIT_OK
    assert driver.stopped == 1


async def test_missing_backend_is_a_clear_fatal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(drv.BACKEND_MODULES, "nftables", "calico.felix.no_such_backend")
    env = {"CALICO_EMBEDDED_PATH": str(tmp_path / "kv.db")}
    with caplog.at_level(logging.ERROR):
        code = await asyncio.wait_for(felix_main.run(FelixConfig.load(ENV, None), env), 10)
    assert code == EXIT_FATAL
    assert "dataplane backend 'nftables' is not available" in caplog.text


def test_load_driver_factory_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DriverUnavailable, match="unknown dataplane backend 'bpf'"):
        load_driver_factory("bpf")
    monkeypatch.setitem(drv.BACKEND_MODULES, "iptables", "calico.felix.config")
    with pytest.raises(DriverUnavailable, match="has no create_driver"):
        load_driver_factory("iptables")
    monkeypatch.setattr(drv, "create_driver", lambda c, m: RecordingDriver(), raising=False)
    monkeypatch.setitem(drv.BACKEND_MODULES, "iptables", "calico.felix.driver")
    assert isinstance(load_driver_factory("iptables")(FelixConfig.load({}, None), None), RecordingDriver)  # type: ignore[arg-type]


def test_bad_local_config_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    monkeypatch.setenv("FELIX_HEALTHPORT", "abc")
    assert felix_main.main(["--config-file", str(tmp_path / "none.cfg")]) == EXIT_FATAL
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "felix.cfg").write_text("[global]\n")
    assert felix_main.main(["--config-file", str(tmp_path / "felix.cfg")]) == EXIT_FATAL
    assert "environment variable FELIX_HEALTHPORT: invalid value 'abc' for HealthPort" in capsys.readouterr().err


async def test_bad_datastore_settings_exit_1(caplog: pytest.LogCaptureFixture) -> None:
    cfg = FelixConfig.load({**ENV, "FELIX_DATASTORETYPE": "etcdv3"}, None)
    with caplog.at_level(logging.ERROR):
        assert await felix_main.run(cfg, {}) == EXIT_FATAL
    assert "etcdEndpoints" in caplog.text

"""The calico-felix entry point: exit codes, SIGTERM, choosing a missing dataplane backend."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from calico.dataplane import factory
from calico.dataplane.driver import KernelDriver
from calico.felix import main as felix_main
from calico.felix.config import FelixConfig
from calico.felix.daemon import EXIT_FATAL, EXIT_OK
from calico.felix.driver import RecordingDriver, kernel_driver
from calico.felix.metrics import FelixMetrics
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
    monkeypatch.setitem(factory.FIREWALL_MODULES, "nftables", "calico.felix.no_such_backend")
    env = {"CALICO_EMBEDDED_PATH": str(tmp_path / "kv.db")}
    with caplog.at_level(logging.ERROR):
        code = await asyncio.wait_for(felix_main.run(FelixConfig.load(ENV, None), env), 10)
    assert code == EXIT_FATAL
    assert "dataplane backend 'nftables' is not available" in caplog.text


async def test_kernel_driver_is_built_from_the_dataplane_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[object, object]] = []
    firewall = object()
    monkeypatch.setattr(factory, "in_initial_netns", lambda: False)  # as if felix ran in a host namespace
    monkeypatch.setattr(factory, "firewall_factory",
                        lambda backend: lambda cfg, netns: seen.append((cfg, netns)) or firewall)
    cfg = FelixConfig.load({"FELIX_DATAPLANEBACKEND": "iptables", "FELIX_INTERFACEPREFIX": "tap"}, None)
    driver = kernel_driver(cfg, FelixMetrics())
    assert isinstance(driver, KernelDriver) and driver.firewall is firewall
    assert seen == [(cfg.dataplane_config(), None)]  # one typed config, this process's namespace
    assert driver.state.config.backend == "iptables" and driver.state.config.interface_prefixes == ("tap",)
    driver.routes = driver.addresses = None  # never started: nothing to stop but the metrics hook
    await driver.stop()


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

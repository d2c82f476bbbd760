"""The agent refuses to program the machine's initial network namespace unless told it is a real host."""

from __future__ import annotations

import pytest

from calico.dataplane import driver
from calico.felix.config import FelixConfig
from calico.felix.metrics import FelixMetrics


def test_refuses_initial_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(driver.ALLOW_INITIAL_NETNS, raising=False)
    monkeypatch.setattr(driver, "in_initial_netns", lambda: True)
    built: list[str] = []
    monkeypatch.setattr(driver, "make_firewall", lambda *a, **k: built.append("firewall"))
    config = FelixConfig.load({}, None)
    with pytest.raises(RuntimeError, match="refusing to program"):
        driver.create_driver(config, FelixMetrics())
    assert built == []  # nothing was constructed, let alone programmed


def test_this_test_process_is_detected_in_initial_namespace() -> None:
    # pytest runs in the machine's own namespace here; the check must see that (the lab runs felix elsewhere).
    assert driver.in_initial_netns()


@pytest.mark.heavy
def test_named_namespace_is_not_initial(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import secrets
    import subprocess
    import sys

    ns = f"cnt-{secrets.token_hex(3)}-ilk"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = "from calico.dataplane.driver import in_initial_netns as f; print(f())"
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == "False"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


async def test_driver_feeds_tool_calls_to_metrics_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    from calico.dataplane import process

    monkeypatch.setattr(driver, "make_firewall", lambda *a, **k: object())
    metrics = FelixMetrics()
    d = driver.create_driver(FelixConfig.load({}, None), metrics, netns="not-used-here")
    d.routes = None  # never started: nothing to stop
    process.report("/usr/sbin/ipset", 0.001, False)
    assert metrics.ipset_calls.value() == 1 and metrics.ipset_errors.value() == 1
    await d.stop()
    process.report("ipset", 0.001, True)
    assert metrics.ipset_calls.value() == 1  # unhooked with the driver

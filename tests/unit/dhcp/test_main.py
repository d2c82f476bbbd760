"""calico-dhcp-agent's command line: bad options name themselves; the machine's own namespace is refused."""

from __future__ import annotations

import pytest

from calico.dhcp import main as agent_main


@pytest.mark.parametrize(("args", "message"), [
    (["--interface", "much-too-long-name"], "--interface 'much-too-long-name'"),
    (["--interface", "tapx"], "--interface-prefix 'tap'"),
    (["--interface-prefix", ""], "--interface-prefix ''"),
    (["--lease-time", "60"], "--lease-time 60"),
    (["--mtu", "70000"], "--mtu 70000"),
])
def test_bad_options_exit_1_naming_the_option(args, message, capsys: pytest.CaptureFixture[str]):
    assert agent_main.main(args) == 1
    assert message in capsys.readouterr().err


def test_the_initial_namespace_is_refused_without_the_override(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str], tmp_path):
    monkeypatch.delenv(agent_main.ALLOW_INITIAL_NETNS, raising=False)
    monkeypatch.setenv("CALICO_EMBEDDED_PATH", str(tmp_path / "kv.db"))
    assert agent_main.in_initial_netns()  # the test suite runs in the machine's own namespace
    assert agent_main.main(["--state-dir", str(tmp_path / "state")]) == 1
    assert "refusing to add interfaces to the machine's initial network namespace" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()

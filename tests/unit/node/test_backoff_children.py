"""The restart schedule (pure) and which children a node runs for each backend (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

from calico.node.backoff import Backoff
from calico.node.children import FELIX_RESTART_CODE, node_children, self_command
from calico.node.settings import NodeSettings


def test_quick_failures_double_up_to_the_maximum() -> None:
    b = Backoff()
    assert [b.delay(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_long_run_resets_the_schedule() -> None:
    b = Backoff(initial=1, maximum=30, reset_after=60)
    assert [b.delay(1), b.delay(1), b.delay(1)] == [1, 2, 4]
    assert b.delay(60) == 1  # it ran long enough: healthy, start again
    assert b.delay(59.9) == 2


def test_a_requested_restart_is_immediate_and_resets() -> None:
    b = Backoff()
    b.delay(0), b.delay(0), b.delay(0)
    assert b.delay(0.1, restart_requested=True) == 0
    assert b.delay(0.1) == 1


def settings(**env: str) -> NodeSettings:
    return NodeSettings.from_env({"NODENAME": "h1", "CALICO_CONFD_DIR": "/tmp/c", "CALICO_RUN_DIR": "/tmp/r",
                                  "CALICO_NODE_BIRD_CMD": "/usr/sbin/bird", **env})


def test_bird_backend_runs_felix_confd_and_bird() -> None:
    felix, confd, bird = node_children(settings(), {"PATH": "/bin", "FELIX_LOGSEVERITYSCREEN": "Debug"})
    me = self_command()
    assert felix.argv == (*me, "-felix") and felix.restart_now_codes == frozenset({FELIX_RESTART_CODE})
    assert felix.env["FELIX_FELIXHOSTNAME"] == "h1" and felix.env["FELIX_HEALTHENABLED"] == "true"
    assert felix.env["FELIX_LOGSEVERITYSCREEN"] == "Debug" and felix.env["PATH"] == "/bin"
    assert felix.pid_file == Path("/tmp/r/felix.pid")
    assert confd.argv == (*me, "-confd") and confd.env["NODENAME"] == "h1"
    assert confd.env["CALICO_CONFD_DIR"] == "/tmp/c" and confd.env["CALICO_RUN_DIR"] == "/tmp/r"
    assert bird.argv == ("/usr/sbin/bird", "-R", "-f", "-c", "/tmp/c/bird.cfg", "-s", "/tmp/r/bird.ctl")
    assert bird.start_when is not None and bird.pid_file == Path("/tmp/r/bird.pid")  # gone when BIRD is


def test_the_environment_overrides_felix_defaults_but_not_the_agreed_names() -> None:
    [felix] = node_children(settings(CALICO_NETWORKING_BACKEND="vxlan"),
                            {"FELIX_HEALTHENABLED": "false", "FELIX_FELIXHOSTNAME": "x", "NODENAME": "other"})
    assert felix.env["FELIX_HEALTHENABLED"] == "false" and felix.env["FELIX_FELIXHOSTNAME"] == "x"
    assert felix.env["NODENAME"] == "h1"


def test_other_backends_run_felix_only_and_the_confd_command_can_be_replaced() -> None:
    assert [c.name for c in node_children(settings(CALICO_NETWORKING_BACKEND="none"), {})] == ["felix"]
    assert [c.name for c in node_children(settings(CALICO_NETWORKING_BACKEND="vxlan"), {})] == ["felix"]
    confd = node_children(settings(CALICO_NODE_CONFD_CMD="/bin/sh -c 'exec sleep 5'"), {})[1]
    assert confd.argv == ("/bin/sh", "-c", "exec sleep 5")


def test_self_command_runs_this_program() -> None:
    me = self_command()
    assert me == (str(Path(sys.executable).parent / "calico-node"),) or me == (sys.executable, "-m", "calico.node")

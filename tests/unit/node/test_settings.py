"""calico-node's environment: Calico's variable names, defaults, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.node.autodetect import CanReach, FirstFound
from calico.node.settings import NodeSettings, ProbeTargets, SettingsError, nodename


def test_defaults() -> None:
    s = NodeSettings.from_env({"NODENAME": "h1"})
    assert s.nodename == "h1"
    assert (s.ipv4.mode, s.ipv6.mode) == ("unset", "unset")
    assert s.ipv4.method == FirstFound() and s.ipv6.method == FirstFound()
    assert s.as_number is None and s.backend == "bird" and s.check_ip_conflicts
    assert s.poll_interval == 60.0
    assert s.bird_config == Path("/etc/calico/confd/config/bird.cfg")
    assert s.bird_socket == Path("/var/run/calico/bird.ctl")
    assert s.nodename_file == Path("/var/lib/calico/nodename")
    assert s.confd_cmd is None and s.log_level == "INFO"


def test_everything_given() -> None:
    s = NodeSettings.from_env({
        "NODENAME": "h2", "IP": "198.19.1.3/24", "IP6": "autodetect", "IP6_AUTODETECTION_METHOD": "can-reach=fd00:1::1",
        "AS": "65001", "CALICO_NETWORKING_BACKEND": "VXLAN", "DISABLE_NODE_IP_CHECK": "true",
        "AUTODETECT_POLL_INTERVAL": "1m30s", "CALICO_CONFD_DIR": "/tmp/c", "CALICO_RUN_DIR": "/tmp/r",
        "CALICO_NODENAME_FILE": "none", "CALICO_NODE_CONFD_CMD": "sh -c 'echo hi; sleep 1'",
        "CALICO_NODE_BIRD_CMD": "/opt/bird", "CALICO_STARTUP_LOGLEVEL": "warn",
    })
    assert s.ipv4.mode == "given" and s.ipv4.given == "198.19.1.3/24"
    assert s.ipv6.mode == "autodetect" and s.ipv6.method == CanReach("fd00:1::1")
    assert s.as_number == 65001 and s.backend == "vxlan" and not s.check_ip_conflicts
    assert s.poll_interval == 90.0
    assert s.bird_socket == Path("/tmp/r/bird.ctl") and s.bird_config == Path("/tmp/c/bird.cfg")
    assert s.nodename_file is None
    assert s.confd_cmd == ("sh", "-c", "echo hi; sleep 1")
    assert s.bird_cmd == "/opt/bird" and s.log_level == "WARNING"


def test_address_forms() -> None:
    s = NodeSettings.from_env({"NODENAME": "h", "IP": "198.19.1.3", "IP6": "NONE"})
    assert s.ipv4.given == "198.19.1.3" and s.ipv6.mode == "none"
    assert NodeSettings.from_env({"NODENAME": "h", "AS": "1.10"}).as_number == 65546
    assert NodeSettings.from_env({"NODENAME": "h", "AUTODETECT_POLL_INTERVAL": "2.5"}).poll_interval == 2.5


def test_node_name_comes_from_nodename_then_hostname() -> None:
    assert nodename({"NODENAME": " Web-1 ", "HOSTNAME": "x"}) == "Web-1"  # as given; the Node model judges it
    assert nodename({"HOSTNAME": "Host-A"}) == "host-a"
    assert nodename({}) == nodename({}).lower() != ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IP": "198.19.1.300"}, "IP='198.19.1.300': not autodetect, none, or an IPv4 address"),
        ({"IP": "fd00:1::1"}, "IP='fd00:1::1': not an IPv4 address"),
        ({"IP6": "198.19.1.3"}, "IP6='198.19.1.3': not an IPv6 address"),
        ({"IP_AUTODETECTION_METHOD": "interface=(x"}, "IP_AUTODETECTION_METHOD='interface=\\(x': invalid interface"),
        ({"IP6_AUTODETECTION_METHOD": "nearest"}, "IP6_AUTODETECTION_METHOD='nearest': unknown method"),
        ({"AS": "abc"}, "AS='abc': invalid AS number"),
        ({"AS": "4294967296"}, "AS='4294967296'"),
        ({"CALICO_NETWORKING_BACKEND": "gobgp"}, "CALICO_NETWORKING_BACKEND='gobgp': must be one of bird, vxlan, none"),
        ({"AUTODETECT_POLL_INTERVAL": "soon"}, "AUTODETECT_POLL_INTERVAL='soon'"),
        ({"AUTODETECT_POLL_INTERVAL": "0"}, "must be more than zero"),
        ({"CALICO_NODE_CONFD_CMD": "sh -c 'x"}, "CALICO_NODE_CONFD_CMD"),
        ({"CALICO_STARTUP_LOGLEVEL": "loud"}, "CALICO_STARTUP_LOGLEVEL='loud'"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        NodeSettings.from_env({"NODENAME": "h", **env})


def test_probe_targets_read_only_what_the_probes_need() -> None:
    t = ProbeTargets.from_env({"IP": "garbage", "FELIX_HEALTHPORT": "9199", "CALICO_RUN_DIR": "/tmp/x"})
    assert (t.felix_host, t.felix_port, t.bird_socket) == ("localhost", 9199, Path("/tmp/x/bird.ctl"))
    with pytest.raises(SettingsError, match=r"FELIX_HEALTHPORT='99999'"):
        ProbeTargets.from_env({"FELIX_HEALTHPORT": "99999"})

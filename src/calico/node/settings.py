"""calico-node's settings, read once from the environment (upstream calico-node's variable names).

In: the process environment. Out: a frozen `NodeSettings`, or `SettingsError` naming the variable and value.

    NODENAME                    this host's Node name (else HOSTNAME, else the host name, lower-cased)
    IP / IP6                    autodetect | none | ADDR[/LEN]; unset: IPv4 autodetects unless the Node
                                already has an address, IPv6 keeps what the Node has
    IP_AUTODETECTION_METHOD     first-found | interface=RE | skip-interface=RE | can-reach=DEST | cidr=CIDR
    IP6_AUTODETECTION_METHOD    (same, for IPv6)
    AS                          this node's AS number; unset: keep the Node's, else the cluster default
    CALICO_NETWORKING_BACKEND   bird (default) | vxlan | none: only bird runs the renderer and BIRD;
                                none is policy only (no addresses are detected or written)
    DISABLE_NODE_IP_CHECK       true: skip the duplicate-address check against other Nodes
    AUTODETECT_POLL_INTERVAL    how often addresses are detected again (Go duration or seconds; 60s)
    CALICO_CONFD_DIR            where the renderer writes bird.cfg (/etc/calico/confd/config)
    CALICO_RUN_DIR              bird.ctl and the children's pid files (/var/run/calico)
    CALICO_NODENAME_FILE        the node name is written here for the CNI plugin (/var/lib/calico/nodename)
    CALICO_LOG_DIR              when set, each child logs to <dir>/<child>.log (default: calico-node's output)
    CALICO_NODE_CONFD_CMD       run this command instead of `calico-node -confd` (shell words)
    CALICO_NODE_BIRD_CMD        the BIRD binary (bird from PATH, else /usr/sbin/bird)
    FELIX_HEALTHHOST / FELIX_HEALTHPORT   where the -felix-live / -felix-ready probes ask (localhost:9099)
    CALICO_STARTUP_LOGLEVEL     the supervisor's log level (info)

The datastore comes from calicoctl's variables (`calico.datastore.config`); FELIX_* go to Felix unchanged.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from calico.node.autodetect import Method, MethodError, parse_method
from calico.resources.fields import check_as_number, parse_duration

__all__ = ["FamilySetting", "NodeSettings", "ProbeTargets", "SettingsError"]

Backend = Literal["bird", "vxlan", "none"]
BACKENDS: tuple[Backend, ...] = ("bird", "vxlan", "none")
DEFAULT_CONFD_DIR = "/etc/calico/confd/config"
DEFAULT_RUN_DIR = "/var/run/calico"
DEFAULT_NODENAME_FILE = "/var/lib/calico/nodename"
DEFAULT_POLL_INTERVAL = 60.0
_TRUE = {"true", "1", "yes", "y", "t"}


class SettingsError(ValueError):
    """A variable is unusable; the message names it and its value."""


@dataclass(frozen=True)
class FamilySetting:
    """`IP`/`IP6` and its autodetection method. `mode` "unset" is the variable being absent or empty."""

    version: int
    mode: Literal["unset", "autodetect", "none", "given"]
    given: str | None = None  # ADDR or ADDR/LEN, canonical
    method: Method | None = None

    @property
    def variable(self) -> str:
        return "IP" if self.version == 4 else "IP6"


@dataclass(frozen=True)
class NodeSettings:
    nodename: str
    ipv4: FamilySetting
    ipv6: FamilySetting
    as_number: int | None = None
    backend: Backend = "bird"
    check_ip_conflicts: bool = True
    poll_interval: float = DEFAULT_POLL_INTERVAL
    confd_dir: Path = Path(DEFAULT_CONFD_DIR)
    run_dir: Path = Path(DEFAULT_RUN_DIR)
    nodename_file: Path | None = Path(DEFAULT_NODENAME_FILE)
    log_dir: Path | None = None  # CALICO_LOG_DIR: one log file per child instead of the supervisor's output
    confd_cmd: tuple[str, ...] | None = None
    bird_cmd: str = "bird"
    log_level: str = "INFO"

    @property
    def bird_config(self) -> Path:
        return self.confd_dir / "bird.cfg"

    @property
    def bird_socket(self) -> Path:
        return self.run_dir / "bird.ctl"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NodeSettings:
        def get(name: str) -> str:
            return env.get(name, "").strip()

        backend = get("CALICO_NETWORKING_BACKEND").lower() or "bird"
        if backend not in BACKENDS:
            raise SettingsError(f"CALICO_NETWORKING_BACKEND={backend!r}: must be one of {', '.join(BACKENDS)}")
        return cls(
            nodename=nodename(env),
            ipv4=_family(env, 4),
            ipv6=_family(env, 6),
            as_number=_as_number(get("AS")),
            backend=backend,  # type: ignore[arg-type]
            check_ip_conflicts=get("DISABLE_NODE_IP_CHECK").lower() not in _TRUE,
            poll_interval=_interval(get("AUTODETECT_POLL_INTERVAL")),
            confd_dir=Path(get("CALICO_CONFD_DIR") or DEFAULT_CONFD_DIR),
            run_dir=Path(get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR),
            nodename_file=_optional_path(env.get("CALICO_NODENAME_FILE"), DEFAULT_NODENAME_FILE),
            log_dir=Path(get("CALICO_LOG_DIR")) if get("CALICO_LOG_DIR") else None,
            confd_cmd=_command(get("CALICO_NODE_CONFD_CMD"), "CALICO_NODE_CONFD_CMD"),
            bird_cmd=get("CALICO_NODE_BIRD_CMD") or shutil.which("bird") or "/usr/sbin/bird",
            log_level=_log_level(get("CALICO_STARTUP_LOGLEVEL")),
        )


@dataclass(frozen=True)
class ProbeTargets:
    """What the health probes ask; read alone so that a probe never fails on an unrelated variable."""

    felix_host: str
    felix_port: int
    bird_socket: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProbeTargets:
        run_dir = env.get("CALICO_RUN_DIR", "").strip() or DEFAULT_RUN_DIR
        return cls(env.get("FELIX_HEALTHHOST", "").strip() or "localhost",
                   _port(env.get("FELIX_HEALTHPORT", "").strip()), Path(run_dir) / "bird.ctl")


def nodename(env: Mapping[str, str]) -> str:
    """NODENAME as given; else HOSTNAME or the host name, lower-cased (Node names are lower case)."""
    name = env.get("NODENAME", "").strip()
    if name:
        return name
    return (env.get("HOSTNAME", "").strip() or socket.gethostname()).lower()


def _family(env: Mapping[str, str], version: int) -> FamilySetting:
    var = "IP" if version == 4 else "IP6"
    method_var = "IP_AUTODETECTION_METHOD" if version == 4 else "IP6_AUTODETECTION_METHOD"
    try:
        method = parse_method(env.get(method_var, ""))
    except MethodError as e:
        raise SettingsError(f"{method_var}={env.get(method_var)!r}: {e}") from None
    raw = env.get(var, "").strip()
    if raw.lower() in ("", "autodetect", "none"):
        mode = raw.lower() or "unset"
        return FamilySetting(version, mode, None, method)  # type: ignore[arg-type]
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r}: not autodetect, none, or an IPv{version} address[/length]") from None
    if iface.version != version:
        raise SettingsError(f"{var}={raw!r}: not an IPv{version} address")
    return FamilySetting(version, "given", str(iface) if "/" in raw else str(iface.ip), method)


def _as_number(raw: str) -> int | None:
    if not raw:
        return None
    try:
        return check_as_number(raw)
    except ValueError as e:
        raise SettingsError(f"AS={raw!r}: {e}") from None


def _interval(raw: str) -> float:
    if not raw:
        return DEFAULT_POLL_INTERVAL
    try:
        seconds = float(raw) if raw.replace(".", "", 1).isdigit() else parse_duration(raw) / 1e9
    except ValueError:
        raise SettingsError(f"AUTODETECT_POLL_INTERVAL={raw!r}: not a duration (e.g. 60s, 5m)") from None
    if seconds <= 0:
        raise SettingsError(f"AUTODETECT_POLL_INTERVAL={raw!r}: must be more than zero")
    return seconds


def _optional_path(raw: str | None, default: str) -> Path | None:
    if raw is None:
        return Path(default)
    raw = raw.strip()
    return None if raw.lower() in ("", "none") else Path(raw)


def _command(raw: str, var: str) -> tuple[str, ...] | None:
    if not raw:
        return None
    try:
        words = tuple(shlex.split(raw))
    except ValueError as e:
        raise SettingsError(f"{var}={raw!r}: {e}") from None
    return words or None


def _port(raw: str) -> int:
    if not raw:
        return 9099
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SettingsError(f"FELIX_HEALTHPORT={raw!r}: not a port number")
    return int(raw)


def _log_level(raw: str) -> str:
    level = (raw or "info").upper()
    level = {"WARN": "WARNING", "FATAL": "CRITICAL", "PANIC": "CRITICAL"}.get(level, level)
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"CALICO_STARTUP_LOGLEVEL={raw!r}: not a log level")
    return level

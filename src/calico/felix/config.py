"""Felix's parameters: where each comes from, how it is parsed, and which changes need a restart.

Enters: the process environment, an optional INI config file, and the `spec` of the FelixConfiguration
resources `default` and `node.<hostname>` (raw JSON from the datastore).
Leaves: an immutable `FelixConfig` (typed attributes, plus `settings()` by Calico's parameter names), the
dataplane's own typed view of it (`dataplane_config()`, a `calico.dataplane.config.DataplaneConfig`), and
`diff()` / `restart_needed()` so the daemon can apply a change live or restart.

Precedence, highest first (as in Calico):

    1. environment            FELIX_<NAME upper-cased>, e.g. FELIX_HEALTHENABLED=true
    2. config file            INI section [global], e.g. /etc/calico/felix.cfg (`--config-file`); names are
                              case-insensitive, e.g. `HealthEnabled = true`
    3. FelixConfiguration `node.<hostname>` spec (camelCase field, e.g. healthEnabled: true)
    4. FelixConfiguration `default` spec
    5. the built-in default

Parameters marked local (hostname, datastore connection, our DataplaneBackend) come only from 1 and 2:
the datastore cannot say how to reach the datastore.

Values: booleans ("true"/"false", "1"/"0", "yes"/"no"), integers, durations (a number of seconds, "90",
or a Go duration, "1m30s"; held as float seconds), port lists ("tcp:22,udp:68", "tcp:10.0.0.0/8:22",
"udp:[fd00::/8]:53", "none" for empty; in the datastore a list of {protocol, port, net}), enums
(case-insensitive, held in Calico's spelling, e.g. "Drop"). A bad value from the environment or the
config file is a `ConfigError` naming the source and parameter (the daemon refuses to start); a bad value
from the datastore is logged and ignored, so the next source down (or the default) applies.

Live or restart: only logging levels, status reporting and the firewall read-back / IP set refresh
intervals apply live (`restart=False` in the table); every other change makes the daemon exit for a restart,
as Calico's Felix does, because the dataplane driver is built from `dataplane_config()` once. So every
parameter `dataplane_config()` reads must keep `restart=True` (a unit test checks it).

Dataplane choice: Calico's own `NFTablesMode` (datastore-settable, Enabled|Disabled|Auto) chooses between
nftables and iptables; our local `DataplaneBackend` (nftables|iptables, env/file only) overrides it when
set. `FelixConfig.dataplane_backend` is the outcome; Auto means nftables here.
"""

from __future__ import annotations

import configparser
import ipaddress
import json
import logging
import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, cast

from calico.dataplane.config import (
    DEFAULT_FAILSAFE_INBOUND,
    DEFAULT_FAILSAFE_OUTBOUND,
    DEFAULT_MTU_IFACE_PATTERN,
    Backend,
    DataplaneConfig,
    EndpointToHostAction,
    FailsafePort,
    FlowLogRules,
    MetadataTarget,
    check_interface_prefix,
    check_metadata,
)
from calico.dataplane.protocols import port_protocol
from calico.datastore import config as dsconfig
from calico.resources.fields import parse_duration

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ConfigError",
    "FailsafePort",
    "FelixConfig",
    "Source",
    "diff",
    "parse_datastore_value",
    "restart_needed",
]

DEFAULT_CONFIG_FILE = "/etc/calico/felix.cfg"
ENV_PREFIX = "FELIX_"


class ConfigError(ValueError):
    """A local configuration value is unusable; the message names the source and the parameter."""


class Source:
    """Labels for where a value came from (also the order of precedence, lowest first)."""

    DEFAULT = "default"
    DATASTORE_GLOBAL = "FelixConfiguration default"
    DATASTORE_NODE = "FelixConfiguration node"
    CONFIG_FILE = "config file"
    ENV = "environment"


# --- value parsers: each takes a string (env/file) or a JSON value (datastore) --------------------------

Parser = Callable[[Any], Any]


def _p_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError("must be a string")
    return v.strip()


def _p_opt_str(v: Any) -> str | None:
    s = _p_str(v)
    return s or None


def _p_path(v: Any) -> str:
    # Calico spells "no file" as "none".
    s = _p_str(v)
    return "" if s.lower() == "none" else s


_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


def _p_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise ValueError("must be true or false")


def _p_int(lo: int, hi: int) -> Parser:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise ValueError("must be an integer")
        if isinstance(v, str):
            try:
                v = int(v.strip(), 10)
            except ValueError:
                raise ValueError("must be an integer") from None
        if not isinstance(v, int):
            raise ValueError("must be an integer")
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return v

    return parse


def _p_duration(v: Any) -> float:
    """Seconds: a plain number (env/file style, "90", "0.5") or a Go duration ("1m30s")."""
    if isinstance(v, bool):
        raise ValueError("must be a duration")
    if isinstance(v, int | float):
        secs = float(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            secs = float(s)
        except ValueError:
            try:
                secs = parse_duration(s) / 1e9
            except ValueError:
                raise ValueError('must be seconds or a duration such as "90s" or "1m30s"') from None
    else:
        raise ValueError("must be a duration")
    if not math.isfinite(secs) or secs < 0:
        raise ValueError("must be a non-negative duration")
    return secs


def _p_enum(*choices: str) -> Parser:
    by_lower = {c.lower(): c for c in choices}

    def parse(v: Any) -> str:
        if isinstance(v, str) and v.strip().lower() in by_lower:
            return by_lower[v.strip().lower()]
        raise ValueError(f"must be one of {', '.join(choices)}")

    return parse


_LOG_LEVELS = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal")


def _p_log_level(v: Any) -> str:
    # Calico also accepts the Go logrus spellings WARN and PANIC.
    if isinstance(v, str) and v.strip().lower() in ("warn", "panic"):
        return "Warning" if v.strip().lower() == "warn" else "Fatal"
    return _p_enum(*_LOG_LEVELS)(v)


def _port_item(proto: Any, port: Any, net: Any) -> FailsafePort:
    if not isinstance(proto, str) or port_protocol(proto) is None:
        raise ValueError(f"protocol {proto!r} must be tcp, udp or sctp")
    port_no = _p_int(0, 65535)(port)
    net_text: str | None = None
    if net not in (None, ""):
        if not isinstance(net, str):
            raise ValueError(f"net {net!r} must be a CIDR")
        try:
            net_text = str(ipaddress.ip_network(net.strip().strip("[]"), strict=False))
        except ValueError:
            raise ValueError(f"net {net!r} is not a CIDR") from None
    return FailsafePort(proto.strip().lower(), port_no, net_text)


def _p_ports(v: Any) -> tuple[FailsafePort, ...]:
    if isinstance(v, list):  # datastore form: [{"protocol": "TCP", "port": 22, "net": "..."}]
        out = []
        for item in v:
            if not isinstance(item, dict):
                raise ValueError("each entry must be an object with protocol and port")
            out.append(_port_item(item.get("protocol", "tcp"), item.get("port"), item.get("net")))
        return tuple(out)
    if not isinstance(v, str):
        raise ValueError('must be a list like "tcp:22,udp:68"')
    s = v.strip()
    if s.lower() in ("", "none"):
        return ()
    out = []
    for item in s.split(","):
        text = item.strip()
        proto, net, port = "tcp", None, text
        if ":" in text:
            proto, _, rest = text.partition(":")
            net, sep, port = rest.rpartition(":")
            if not sep:
                net = None
        try:
            out.append(_port_item(proto, port, net))
        except ValueError as e:
            raise ValueError(f"entry {text!r}: {e}") from None
    return tuple(out)


def _p_iface_prefix(v: Any) -> str:
    """Comma-separated interface name prefixes, e.g. "cali" or "cali,tap"; held as written (stripped)."""
    parts = [p.strip() for p in _p_str(v).split(",")]
    for part in parts:
        check_interface_prefix(part)
    return ",".join(parts)


def _p_ipv4_opt(v: Any) -> str | None:
    """An IPv4 address, or None for "" / "none"."""
    s = _p_str(v)
    if s.lower() in ("", "none"):
        return None
    try:
        if ipaddress.ip_address(s).version == 4:
            return s
    except ValueError:
        pass
    raise ValueError("must be an IPv4 address")


def _p_regex(v: Any) -> str:
    s = _p_str(v)
    try:
        re.compile(s)
    except re.error as e:
        raise ValueError(f"is not a regular expression: {e}") from None
    return s


def _p_datastore_type(v: Any) -> str:
    return _p_enum(*dsconfig.DATASTORE_TYPES)(v)


# --- the parameter table: one dataclass field per parameter ----------------------------------------------


def _param(
    name: str,
    parse: Parser,
    default: Any = None,
    *,
    spec: str | bool | None = True,
    restart: bool = True,
    aliases: tuple[str, ...] = (),
    default_factory: Callable[[], Any] | None = None,
    secret: bool = False,
) -> Any:
    """A FelixConfig field. `spec`: the FelixConfiguration field name (True: derived by lower-casing the
    first letter; False/None: local only). `restart`: a change needs a process restart."""
    if spec is True:
        spec = name[0].lower() + name[1:]
    meta = {"param": name, "parse": parse, "spec": spec or None, "restart": restart, "aliases": aliases}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True)
class Layers:
    """Parsed values per source (parameter name -> value); only what each source actually set."""

    env: Mapping[str, Any] = field(default_factory=dict)
    file: Mapping[str, Any] = field(default_factory=dict)
    node: Mapping[str, Any] = field(default_factory=dict)
    global_: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views, so a FelixConfig really cannot change under its holder.
        for name in ("env", "file", "node", "global_"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def in_precedence(self) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """Highest first."""
        return (
            (Source.ENV, self.env),
            (Source.CONFIG_FILE, self.file),
            (Source.DATASTORE_NODE, self.node),
            (Source.DATASTORE_GLOBAL, self.global_),
        )


@dataclass(frozen=True)
class FelixConfig:
    """The merged, effective configuration. Build with `FelixConfig.load()` (local sources) and
    `with_datastore()`; attributes are the parameters in snake_case."""

    # Identity and datastore connection (local only).
    felix_hostname: str = _param(
        "FelixHostname", _p_str, spec=False, aliases=("Hostname",), default_factory=socket.gethostname
    )
    datastore_type: str | None = _param("DatastoreType", _p_datastore_type, spec=False)
    etcd_endpoints: str | None = _param("EtcdEndpoints", _p_opt_str, spec=False)
    etcd_ca_file: str | None = _param("EtcdCaFile", _p_opt_str, spec=False)
    etcd_cert_file: str | None = _param("EtcdCertFile", _p_opt_str, spec=False)
    etcd_key_file: str | None = _param("EtcdKeyFile", _p_opt_str, spec=False)
    etcd_username: str | None = _param("EtcdUsername", _p_opt_str, spec=False)
    etcd_password: str | None = _param("EtcdPassword", _p_opt_str, spec=False, secret=True)
    embedded_path: str | None = _param("EmbeddedPath", _p_opt_str, spec=False)

    # Dataplane choice.
    dataplane_backend_override: str | None = _param(
        "DataplaneBackend", _p_enum("nftables", "iptables"), spec=False
    )
    nftables_mode: str = _param(
        "NFTablesMode", _p_enum("Enabled", "Disabled", "Auto"), "Auto", spec="nftablesMode"
    )
    iptables_backend: str = _param("IptablesBackend", _p_enum("Legacy", "NFT", "Auto"), "Auto")
    interface_prefix: str = _param("InterfacePrefix", _p_iface_prefix, "cali")
    ipv6_support: bool = _param("IPv6Support", _p_bool, True, spec="ipv6Support")
    chain_insert_mode: str = _param("ChainInsertMode", _p_enum("Insert", "Append"), "Insert")
    default_endpoint_to_host_action: str = _param(
        "DefaultEndpointToHostAction", _p_enum("Drop", "Accept", "Return"), "Drop"
    )
    failsafe_inbound_host_ports: tuple[FailsafePort, ...] = _param(
        "FailsafeInboundHostPorts", _p_ports, DEFAULT_FAILSAFE_INBOUND
    )
    failsafe_outbound_host_ports: tuple[FailsafePort, ...] = _param(
        "FailsafeOutboundHostPorts", _p_ports, DEFAULT_FAILSAFE_OUTBOUND
    )
    metadata_addr: str = _param("MetadataAddr", _p_str, "127.0.0.1")
    metadata_port: int = _param("MetadataPort", _p_int(0, 65535), 8775)
    openstack_region: str = _param("OpenstackRegion", _p_str, "")

    # The network between hosts: VXLAN, IP-in-IP, natOutgoing, MTU (calico.dataplane.network). Enabled None:
    # auto, from the IP pools (as Calico does). MTU 0: the host MTU minus the encapsulation's overhead.
    vxlan_enabled: bool | None = _param("VXLANEnabled", _p_bool, None, spec="vxlanEnabled")
    vxlan_port: int = _param("VXLANPort", _p_int(1, 65535), 4789, spec="vxlanPort")
    vxlan_vni: int = _param("VXLANVNI", _p_int(1, 2**24 - 1), 4096, spec="vxlanVNI")
    vxlan_mtu: int = _param("VXLANMTU", _p_int(0, 65535), 0, spec="vxlanMTU")
    vxlan_mtu_v6: int = _param("VXLANMTUV6", _p_int(0, 65535), 0, spec="vxlanMTUV6")
    ipip_enabled: bool | None = _param("IpInIpEnabled", _p_bool, None, spec="ipipEnabled")
    ipip_mtu: int = _param("IpInIpMtu", _p_int(0, 65535), 0, spec="ipipMTU")
    nat_outgoing_address: str | None = _param("NATOutgoingAddress", _p_ipv4_opt, spec="natOutgoingAddress")
    mtu_iface_pattern: str = _param("MTUIfacePattern", _p_regex, DEFAULT_MTU_IFACE_PATTERN, spec="mtuIfacePattern")
    # Ours (local only): where the workload MTU is written for the CNI plugin; "none" turns it off.
    mtu_file_path: str = _param("MTUFilePath", _p_path, "/var/lib/calico/mtu", spec=False)

    # Refresh intervals (0 disables); IptablesRefreshInterval also paces the nftables read-back.
    # RouteRefreshInterval is given to the route manager when the driver is built, hence a restart.
    iptables_refresh_interval: float = _param("IptablesRefreshInterval", _p_duration, 90.0, restart=False)
    route_refresh_interval: float = _param("RouteRefreshInterval", _p_duration, 90.0)
    ipsets_refresh_interval: float = _param("IpsetsRefreshInterval", _p_duration, 90.0, restart=False)

    # Status reporting.
    reporting_interval_secs: float = _param(
        "ReportingIntervalSecs", _p_duration, 30.0, spec="reportingInterval", restart=False
    )
    reporting_ttl_secs: float = _param("ReportingTTLSecs", _p_duration, 90.0, spec="reportingTTL", restart=False)
    endpoint_reporting_enabled: bool = _param("EndpointReportingEnabled", _p_bool, False, restart=False)
    endpoint_reporting_delay_secs: float = _param(
        "EndpointReportingDelaySecs", _p_duration, 1.0, spec="endpointReportingDelay", restart=False
    )
    # Ours (local only): how often the verdict rules' counters are written to the datastore (0: never).
    counters_reporting_interval_secs: float = _param(
        "CountersReportingIntervalSecs", _p_duration, 5.0, spec=False, restart=False
    )

    # Flow logs (issue 9): Calico's names where it has them. Collected when the file or the socket is on; every
    # change restarts Felix (the logging rules are part of the dataplane's configuration).
    flow_logs_flush_interval: float = _param("FlowLogsFlushInterval", _p_duration, 300.0)
    flow_logs_file_enabled: bool = _param("FlowLogsFileEnabled", _p_bool, False)
    flow_logs_file_directory: str = _param("FlowLogsFileDirectory", _p_str, "/var/log/calico/flowlogs")
    flow_logs_file_max_files: int = _param("FlowLogsFileMaxFiles", _p_int(1, 1000), 5)
    flow_logs_file_max_file_size_mb: int = _param("FlowLogsFileMaxFileSizeMB", _p_int(1, 100000), 100,
                                                  spec="flowLogsFileMaxFileSizeMB")
    # Ours (local only): the unix socket streaming records ("" off), the NFLOG group, what the kernel logs (at
    # most FlowLogsRateLimit packets a second host-wide, bursts of FlowLogsRateBurst, FlowLogsSamplePercent of
    # the packets) and what the collector takes (flows per interval, logged packets a second).
    flow_logs_socket_path: str = _param("FlowLogsSocketPath", _p_path, "", spec=False)
    flow_logs_nflog_group: int = _param("FlowLogsNflogGroup", _p_int(1, 65535), 1, spec=False)
    flow_logs_rate_limit: int = _param("FlowLogsRateLimit", _p_int(1, 10**7), 1000, spec=False)
    flow_logs_rate_burst: int = _param("FlowLogsRateBurst", _p_int(1, 10**7), 100, spec=False)
    flow_logs_sample_percent: int = _param("FlowLogsSamplePercent", _p_int(1, 100), 100, spec=False)
    flow_logs_max_flows: int = _param("FlowLogsMaxFlows", _p_int(1, 10**7), 100_000, spec=False)
    flow_logs_max_events_per_second: int = _param("FlowLogsMaxEventsPerSecond", _p_int(1, 10**7), 20_000,
                                                  spec=False)

    # Health and metrics servers.
    health_enabled: bool = _param("HealthEnabled", _p_bool, False)
    health_host: str = _param("HealthHost", _p_str, "localhost")
    health_port: int = _param("HealthPort", _p_int(0, 65535), 9099)
    prometheus_metrics_enabled: bool = _param("PrometheusMetricsEnabled", _p_bool, False)
    prometheus_metrics_host: str = _param("PrometheusMetricsHost", _p_str, "")
    prometheus_metrics_port: int = _param("PrometheusMetricsPort", _p_int(0, 65535), 9091)
    prometheus_process_metrics_enabled: bool = _param("PrometheusProcessMetricsEnabled", _p_bool, True)

    # Logging.
    log_severity_screen: str = _param("LogSeverityScreen", _p_log_level, "Info", restart=False)
    log_severity_file: str = _param("LogSeverityFile", _p_log_level, "Info", restart=False)
    log_file_path: str = _param("LogFilePath", _p_path, "")

    # Not parameters: the raw layers (to re-merge) and where each value came from.
    layers: Layers = field(default_factory=Layers, compare=False, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    # --- building ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        config_file: str | None = None,
        *,
        config_file_required: bool = False,
    ) -> FelixConfig:
        """Local configuration (environment and config file) over the defaults; raises ConfigError.

        A missing `config_file` is an error only when `config_file_required` (it was given explicitly)."""
        env = os.environ if env is None else env
        file_values = _read_config_file(config_file, config_file_required) if config_file else {}
        return cls.merge(Layers(env=_read_env(env), file=file_values))

    @classmethod
    def merge(cls, layers: Layers) -> FelixConfig:
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for p in PARAMS.values():
            for label, layer in layers.in_precedence():
                if p.name in layer:
                    values[p.attr] = layer[p.name]
                    sources[p.name] = label
                    break
            else:
                sources[p.name] = Source.DEFAULT
        return cls(**values, layers=layers, sources=MappingProxyType(sources))

    def with_datastore(
        self, global_spec: Mapping[str, Any] | None, node_spec: Mapping[str, Any] | None
    ) -> FelixConfig:
        """This config re-merged with the FelixConfiguration `default` and `node.<hostname>` values
        (already parsed by `parse_datastore_spec`; None means the resource does not exist)."""
        return self.merge(replace(self.layers, global_=dict(global_spec or {}), node=dict(node_spec or {})))

    # --- reading ----------------------------------------------------------------------------------

    @property
    def hostname(self) -> str:
        return self.felix_hostname

    @property
    def dataplane_backend(self) -> str:
        """"nftables" or "iptables": DataplaneBackend when set, else from NFTablesMode."""
        if self.dataplane_backend_override:
            return self.dataplane_backend_override
        return "iptables" if self.nftables_mode == "Disabled" else "nftables"

    @property
    def status_region(self) -> str:
        """The region path segment of Felix's status keys."""
        return f"region-{self.openstack_region}" if self.openstack_region else "no-region"

    def settings(self) -> dict[str, Any]:
        """Every parameter by Calico's name."""
        return {p.name: getattr(self, p.attr) for p in PARAMS.values()}

    @property
    def openstack_active(self) -> bool:
        """Felix's test: a region is set, the interface prefix is OpenStack's `tap`, or metadata is not default."""
        return bool(
            self.openstack_region
            or any(p.startswith("tap") for p in self.interface_prefix.split(","))
            or self.metadata_addr != "127.0.0.1"
            or self.metadata_port != 8775
        )

    def metadata_target(self) -> MetadataTarget | None:
        """Where the metadata DNAT goes: only with OpenStack (as in Felix), and only to an IPv4 address (the
        metadata API is IPv4-only; a host name is not resolved here). "none" turns it off."""
        if not self.openstack_active or self.metadata_addr.lower() in ("", "none"):
            return None
        target = MetadataTarget(self.metadata_addr, self.metadata_port)
        try:
            check_metadata(target)
        except ValueError as e:
            log.warning("MetadataAddr / MetadataPort: %s: no metadata DNAT", e)
            return None
        return target

    @property
    def flow_logs_enabled(self) -> bool:
        return self.flow_logs_file_enabled or bool(self.flow_logs_socket_path)

    def flow_log_rules(self) -> FlowLogRules | None:
        """The kernel side of flow logs (None: off)."""
        if not self.flow_logs_enabled:
            return None
        return FlowLogRules(self.flow_logs_nflog_group, self.flow_logs_rate_limit, self.flow_logs_rate_burst,
                            self.flow_logs_sample_percent)

    def dataplane_config(self) -> DataplaneConfig:
        """The dataplane's typed view of these parameters (one line per setting; all of them need a restart)."""
        return DataplaneConfig(
            backend=cast(Backend, self.dataplane_backend),
            iptables_flavour="legacy" if self.iptables_backend == "Legacy" else "nft",
            interface_prefixes=tuple(self.interface_prefix.split(",")),
            endpoint_to_host_action=cast(EndpointToHostAction, self.default_endpoint_to_host_action),
            failsafe_inbound=self.failsafe_inbound_host_ports,
            failsafe_outbound=self.failsafe_outbound_host_ports,
            metadata=self.metadata_target(),
            route_refresh_interval=self.route_refresh_interval,
            ipv6_support=self.ipv6_support,
            hostname=self.hostname,
            vxlan_enabled=self.vxlan_enabled,
            vxlan_port=self.vxlan_port,
            vxlan_vni=self.vxlan_vni,
            vxlan_mtu=self.vxlan_mtu,
            vxlan_mtu_v6=self.vxlan_mtu_v6,
            ipip_enabled=self.ipip_enabled,
            ipip_mtu=self.ipip_mtu,
            nat_outgoing_address=self.nat_outgoing_address,
            mtu_iface_pattern=self.mtu_iface_pattern,
            mtu_file=self.mtu_file_path or None,
            flow_logs=self.flow_log_rules(),
        )

    def datastore_config(self, env: Mapping[str, str] | None = None) -> dsconfig.DatastoreConfig:
        """How to reach the datastore: calicoctl's variables (DATASTORE_TYPE, ETCD_*, CALICO_EMBEDDED_PATH)
        from `env`, overridden by Felix's own parameters when set; then `datastore.config.resolve`."""
        merged = dict(os.environ if env is None else env)
        overlay = {
            "DATASTORE_TYPE": self.datastore_type,
            "ETCD_ENDPOINTS": self.etcd_endpoints,
            "ETCD_CA_CERT_FILE": self.etcd_ca_file,
            "ETCD_CERT_FILE": self.etcd_cert_file,
            "ETCD_KEY_FILE": self.etcd_key_file,
            "ETCD_USERNAME": self.etcd_username,
            "ETCD_PASSWORD": self.etcd_password,
            "CALICO_EMBEDDED_PATH": self.embedded_path,
        }
        merged.update({k: v for k, v in overlay.items() if v is not None})
        try:
            return dsconfig.resolve(None, merged)
        except dsconfig.ConfigError as e:
            raise ConfigError(f"datastore: {e}") from None


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    attr: str
    parse: Parser
    spec: str | None
    restart: bool
    aliases: tuple[str, ...]


PARAMS: Mapping[str, Param] = MappingProxyType(
    {
        f.metadata["param"]: Param(
            f.metadata["param"], f.name, f.metadata["parse"], f.metadata["spec"], f.metadata["restart"],
            f.metadata["aliases"],
        )
        for f in fields(FelixConfig)
        if "param" in f.metadata
    }
)
# Lower-cased name or alias -> canonical name, for the case-insensitive env and file lookups.
_BY_LOWER: Mapping[str, str] = MappingProxyType(
    {n.lower(): p.name for p in PARAMS.values() for n in (p.name, *p.aliases)}
)
_BY_SPEC: Mapping[str, str] = MappingProxyType({p.spec: p.name for p in PARAMS.values() if p.spec})


# --- sources ---------------------------------------------------------------------------------------------


def _parse_local(raw: Mapping[str, str], origin: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, text in raw.items():
        name = _BY_LOWER[key.lower()]
        try:
            out[name] = PARAMS[name].parse(text)
        except ValueError as e:
            raise ConfigError(f"{origin(key)}: invalid value {text!r} for {name}: {e}") from None
    return out


def _read_env(env: Mapping[str, str]) -> dict[str, Any]:
    raw = {}
    for var, text in env.items():
        if not var.upper().startswith(ENV_PREFIX):
            continue
        key = var[len(ENV_PREFIX) :]
        if key.lower() in _BY_LOWER:
            raw[key] = text
    return _parse_local(raw, lambda key: f"environment variable {ENV_PREFIX}{key.upper()}")


def _read_config_file(path: str, required: bool) -> dict[str, Any]:
    parser = configparser.ConfigParser(interpolation=None)  # keys are lower-cased: case-insensitive names
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path}: does not exist") from None
        return {}
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    except configparser.Error as e:
        raise ConfigError(f"config file {path}: not an INI file: {e}") from None
    if not parser.has_section("global"):
        if parser.sections():
            log.warning("config file %s has no [global] section; ignoring it", path)
        return {}
    raw = {}
    for key, text in parser.items("global"):
        if key in _BY_LOWER:
            raw[key] = text
        else:
            log.warning("config file %s: unknown parameter %s ignored", path, key)
    return _parse_local(raw, lambda key: f"config file {path} [global] {key}")


def parse_datastore_spec(spec: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The parameters a FelixConfiguration spec sets. Bad values are logged and left out (never raises);
    fields we do not implement are ignored."""
    out: dict[str, Any] = {}
    for field_name, value in spec.items():
        name = _BY_SPEC.get(field_name)
        if name is None or value is None:
            continue
        try:
            out[name] = PARAMS[name].parse(value)
        except ValueError as e:
            log.warning("%s: ignoring bad value %r for %s (%s): %s", source, value, name, field_name, e)
    return out


def parse_datastore_value(value: bytes, source: str) -> dict[str, Any] | None:
    """A stored FelixConfiguration's parameters, or None when the value is not a usable resource at all
    (logged; the caller keeps what it had)."""
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("%s: stored value is not JSON (%s); keeping the previous settings", source, e)
        return None
    spec = doc.get("spec", {}) if isinstance(doc, dict) else None
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        log.warning("%s: stored value has no spec object; keeping the previous settings", source)
        return None
    return parse_datastore_spec(spec, source)


# --- changes ---------------------------------------------------------------------------------------------


def diff(old: FelixConfig, new: FelixConfig) -> dict[str, tuple[Any, Any]]:
    """Changed parameters by Calico name: name -> (old value, new value)."""
    return {
        p.name: (getattr(old, p.attr), getattr(new, p.attr))
        for p in PARAMS.values()
        if getattr(old, p.attr) != getattr(new, p.attr)
    }


def restart_needed(changes: Mapping[str, Any]) -> list[str]:
    """The changed parameters that cannot be applied to a running Felix."""
    return sorted(name for name in changes if PARAMS[name].restart)

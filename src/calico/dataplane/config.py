"""The dataplane's configuration: one typed, frozen value, built once by the agent and fixed for the driver's life.

In: whatever the agent has parsed (Felix builds it in `FelixConfig.dataplane_config()` from its parameters).
Out: `DataplaneConfig`, which `factory.create_driver` uses to choose and build the backends and which
`DesiredState.config` carries to the renderers. A value that cannot be programmed is a ValueError naming the
field (`DataplaneConfig.<field>: ...`), raised at construction, before anything touches the kernel.

Configuration changes: the driver never changes its configuration while it runs. The calculation graph's
`ConfigUpdate` events are ignored by `DesiredState`, and Felix does not forward them; every Felix parameter
that feeds this value needs a restart (`restart=True` in `calico.felix.config`), so Felix exits on such a change
and its supervisor starts it with the new value. Tests may still call `DesiredState.configure()`, which marks
the whole table for a full rewrite.

Adding a setting: one field here (with Felix's default) and one line in `FelixConfig.dataplane_config()`;
validate it in `_check` when some values cannot be programmed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import socket
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from calico.dataplane.protocols import port_protocol

Backend = Literal["nftables", "iptables"]
IptablesFlavour = Literal["nft", "legacy"]  # iptables-nft-* or iptables-legacy-*
EndpointToHostAction = Literal["Drop", "Accept", "Return"]

BACKENDS: tuple[str, ...] = get_args(Backend)
IPTABLES_FLAVOURS: tuple[str, ...] = get_args(IptablesFlavour)
ENDPOINT_TO_HOST_ACTIONS: tuple[str, ...] = get_args(EndpointToHostAction)

# Felix's MTUIfacePattern: the host interfaces whose smallest MTU is the host MTU.
DEFAULT_MTU_IFACE_PATTERN = r"^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)"

# An interface name is at most 15 characters (IFNAMSIZ - 1); prefixes are matched as `<prefix>*` / `<prefix>+`.
_IFACE_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,15}\Z")


class FailsafePort(NamedTuple):
    """One failsafe host port: traffic to/from it is always allowed (optionally only for peers in `net`)."""

    protocol: str  # "tcp" | "udp" | "sctp"
    port: int
    net: str | None = None  # a canonical CIDR: source inbound, destination outbound


class MetadataTarget(NamedTuple):
    """Where workloads' 169.254.169.254:80 is DNATed to (OpenStack's metadata service)."""

    addr: str  # an IPv4 address
    port: int

    @property
    def loopback(self) -> bool:
        """127.0.0.0/8 (Felix's default 127.0.0.1): workload interfaces then need route_localnet."""
        return ipaddress.ip_address(self.addr).is_loopback


def _ports(*specs: str) -> tuple[FailsafePort, ...]:
    return tuple(FailsafePort(p, int(n)) for p, _, n in (s.partition(":") for s in specs))


class FlowLogRules(NamedTuple):
    """Flow logs' kernel side: every verdict rule also logs to NFLOG `group` (its identity as the prefix), for
    `sample_percent` of the packets, at most `rate` packets a second (bursts of `burst`) for the whole host."""

    group: int = 1
    rate: int = 1000
    burst: int = 100
    sample_percent: int = 100


# Felix's defaults (FelixConfiguration failsafeInboundHostPorts / failsafeOutboundHostPorts).
DEFAULT_FAILSAFE_INBOUND = _ports(
    "tcp:22", "udp:68", "tcp:179", "tcp:2379", "tcp:2380", "tcp:5473", "tcp:6443", "tcp:6666", "tcp:6667"
)
DEFAULT_FAILSAFE_OUTBOUND = _ports(
    "udp:53", "udp:67", "tcp:179", "tcp:2379", "tcp:2380", "tcp:5473", "tcp:6443", "tcp:6666", "tcp:6667"
)


@dataclass(frozen=True, slots=True)
class DataplaneConfig:
    """Everything the kernel dataplane is built from. Defaults are Felix's."""

    backend: Backend = "nftables"
    iptables_flavour: IptablesFlavour = "nft"
    interface_prefixes: tuple[str, ...] = ("cali",)  # workload interfaces: InterfacePrefix, split at commas
    endpoint_to_host_action: EndpointToHostAction = "Drop"  # DefaultEndpointToHostAction
    failsafe_inbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_INBOUND
    failsafe_outbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_OUTBOUND
    metadata: MetadataTarget | None = None  # None: no metadata DNAT (only OpenStack has one)
    route_refresh_interval: float = 90.0  # seconds; 0 turns the periodic route read-back off
    # Carried for the backends to come; today both firewall backends program IPv4 and IPv6 regardless.
    ipv6_support: bool = True
    # The network between hosts (calico.dataplane.network). `hostname` says which VTEP and blocks are this host's.
    hostname: str = dataclasses.field(default_factory=socket.gethostname)
    vxlan_enabled: bool | None = None  # VXLANEnabled; None: per family, when some pool of it uses VXLAN
    vxlan_port: int = 4789  # VXLANPort
    vxlan_vni: int = 4096  # VXLANVNI
    vxlan_mtu: int = 0  # VXLANMTU; 0: the host MTU - 50
    vxlan_mtu_v6: int = 0  # VXLANMTUV6; 0: the host MTU - 70
    ipip_enabled: bool | None = None  # IpInIpEnabled; None: when some IPv4 pool uses IP-in-IP
    ipip_mtu: int = 0  # IpInIpMtu; 0: the host MTU - 20
    nat_outgoing_address: str | None = None  # NATOutgoingAddress: SNAT to it (IPv4) instead of MASQUERADE
    mtu_iface_pattern: str = DEFAULT_MTU_IFACE_PATTERN  # MTUIfacePattern
    mtu_file: str | None = None  # where the workload MTU is written (Felix passes /var/lib/calico/mtu); None: off
    flow_logs: FlowLogRules | None = None  # None: verdict rules log nothing (flow logs off)

    def __post_init__(self) -> None:
        _check(self)


def _fail(field: str, problem: str) -> ValueError:
    return ValueError(f"DataplaneConfig.{field}: {problem}")


def _check(c: DataplaneConfig) -> None:
    for field, value, allowed in (
        ("backend", c.backend, BACKENDS),
        ("iptables_flavour", c.iptables_flavour, IPTABLES_FLAVOURS),
        ("endpoint_to_host_action", c.endpoint_to_host_action, ENDPOINT_TO_HOST_ACTIONS),
    ):
        if value not in allowed:
            raise _fail(field, f"{value!r} is not one of {', '.join(allowed)}")
    if not c.interface_prefixes:
        raise _fail("interface_prefixes", "at least one prefix is needed")
    for prefix in c.interface_prefixes:
        try:
            check_interface_prefix(prefix)
        except ValueError as e:
            raise _fail("interface_prefixes", str(e)) from None
    for field, ports in (("failsafe_inbound", c.failsafe_inbound), ("failsafe_outbound", c.failsafe_outbound)):
        for p in ports:
            _check_failsafe(field, p)
    if c.metadata is not None:
        try:
            check_metadata(c.metadata)
        except ValueError as e:
            raise _fail("metadata", str(e)) from None
    if not math.isfinite(c.route_refresh_interval) or c.route_refresh_interval < 0:
        raise _fail("route_refresh_interval", f"{c.route_refresh_interval!r} is not a non-negative number")
    if c.flow_logs is not None:
        for name, value, lo, hi in (("group", c.flow_logs.group, 1, 65535), ("rate", c.flow_logs.rate, 1, 10**7),
                                    ("burst", c.flow_logs.burst, 1, 10**7),
                                    ("sample_percent", c.flow_logs.sample_percent, 1, 100)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise _fail(f"flow_logs.{name}", f"{value!r} is not an integer {lo}-{hi}")
    _check_network(c)


def _check_network(c: DataplaneConfig) -> None:
    for name, value, lo, hi in (
        ("vxlan_port", c.vxlan_port, 1, 65535),
        ("vxlan_vni", c.vxlan_vni, 1, 2**24 - 1),
        ("vxlan_mtu", c.vxlan_mtu, 0, 65535),
        ("vxlan_mtu_v6", c.vxlan_mtu_v6, 0, 65535),
        ("ipip_mtu", c.ipip_mtu, 0, 65535),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _fail(name, f"{value!r} is not an integer {lo}-{hi}")
    if c.nat_outgoing_address is not None:
        try:
            ok = ipaddress.ip_address(c.nat_outgoing_address).version == 4
        except ValueError:
            ok = False
        if not ok:
            raise _fail("nat_outgoing_address", f"{c.nat_outgoing_address!r} is not an IPv4 address")
    try:
        re.compile(c.mtu_iface_pattern)
    except re.error as e:
        raise _fail("mtu_iface_pattern", f"{c.mtu_iface_pattern!r} is not a regular expression: {e}") from None
    if not c.hostname:
        raise _fail("hostname", "must not be empty")


def check_interface_prefix(prefix: str) -> None:
    """ValueError unless `prefix` can start an interface name (it is matched as `<prefix>*` / `<prefix>+`)."""
    if not _IFACE_PREFIX.match(prefix):
        raise ValueError(f"prefix {prefix!r} is not 1-15 letters, digits, '.', '_' or '-'")


def check_metadata(target: MetadataTarget) -> None:
    """ValueError unless the metadata DNAT can go to `target`: an IPv4 address (the metadata API is IPv4-only)."""
    try:
        ok = ipaddress.ip_address(target.addr).version == 4
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"address {target.addr!r} is not an IPv4 address")
    if not 0 < target.port <= 65535:
        raise ValueError(f"port {target.port} is not 1-65535")


def _check_failsafe(field: str, p: FailsafePort) -> None:
    if not isinstance(p, FailsafePort):
        raise _fail(field, f"{p!r} is not a FailsafePort")
    if port_protocol(p.protocol) != p.protocol:
        raise _fail(field, f"protocol {p.protocol!r} is not tcp, udp or sctp (lower case)")
    if not 0 <= p.port <= 65535:
        raise _fail(field, f"port {p.port} is not 0-65535")
    if p.net is not None:
        try:
            canonical = str(ipaddress.ip_network(p.net, strict=False))
        except ValueError:
            raise _fail(field, f"net {p.net!r} is not a CIDR") from None
        if canonical != p.net:
            raise _fail(field, f"net {p.net!r} is not in canonical form ({canonical})")

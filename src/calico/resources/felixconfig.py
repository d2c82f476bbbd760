"""The `FelixConfiguration` kind: Felix's settings, cluster-wide (`default`) or per node
(`node.<name>`).

In: a decoded FelixConfiguration document. Out: a validated resource. Every field is optional;
None means "use Felix's own default" (documented per field in Calico's reference), so nothing is
filled in here. Durations are Go duration strings, stored as Go prints them ("90s" -> "1m30s");
`fields.duration_seconds` converts them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import (
    CIDR,
    Duration,
    IfName,
    IPv4,
    IPv6,
    LogLevel,
    NumericPort,
    PortNumber,
    Regex,
    check_label_name,
    cidr_version,
    int_range,
)
from calico.resources.meta import CalicoModel, Resource, empty_spec

__all__ = ["FelixConfiguration", "FelixConfigurationSpec", "HealthTimeoutOverride", "ProtoPort", "RouteTableRange"]

_U32 = 2**32 - 1
U32 = Annotated[int, int_range(0, _U32)]
NonNegInt = Annotated[int, int_range(0, 2**31 - 1)]
MTU = Annotated[int, int_range(0, 65535, "MTU")]
AnyPort = Annotated[int, int_range(0, 65535, "port")]

_KV_ITEM = re.compile(r"\s*\w+=.*\Z")
_IFACE_FILTER = re.compile(r"[a-zA-Z0-9:._+-]{1,15}\Z")
_PROM_HOST = re.compile(r"[a-zA-Z0-9:._+-]{1,64}\Z")
_OPENSTACK_NS_PREFIX = "openstack-region-"


def _check_kv_list(value: Any) -> str:
    """Comma-separated key=value items (empty items allowed), e.g. feature overrides."""
    if not isinstance(value, str) or not all(not i or _KV_ITEM.match(i) for i in value.split(",")):
        raise ValueError(f'invalid key=value list {show(value)}: must be like "A=true,B=false"')
    return value


def _regex_checker(pattern: re.Pattern[str], what: str) -> PlainValidator:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise ValueError(f"invalid {what} {show(value)}")
        return value

    return PlainValidator(check)


def _check_region(value: Any) -> str:
    # The region becomes part of a namespace name ("openstack-region-<region>").
    limit = 63 - len(_OPENSTACK_NS_PREFIX)
    s = check_label_name(value, "openstackRegion")
    if len(s) > limit:
        raise ValueError(f"openstackRegion {show(s)} is too long: at most {limit} characters")
    return s


def _check_prefixes(value: Any) -> str:
    if not isinstance(value, str) or not all(p and not p.isspace() and " " not in p for p in value.split(",")):
        raise ValueError(f"invalid interfacePrefix {show(value)}: comma-separated non-empty prefixes")
    return value


def _check_port_protocol(value: Any) -> str:
    if isinstance(value, str) and value.upper() in ("TCP", "UDP", "SCTP"):
        return value.upper()
    raise ValueError(f"invalid protocol {show(value)}: must be TCP, UDP or SCTP")


class ProtoPort(CalicoModel):
    """A failsafe port: protocol, port and optionally the only network it is open to/from."""

    protocol: Annotated[str, PlainValidator(_check_port_protocol)]
    port: AnyPort
    net: CIDR | None = None


class RouteTableRange(CalicoModel):
    min: int
    max: int

    @model_validator(mode="after")
    def _range(self) -> RouteTableRange:
        if not 1 <= self.min <= self.max <= 250:
            fail(f"route table range {self.min}-{self.max} invalid: must be within 1..250 with min <= max")
        return self


class RouteTableIDRange(CalicoModel):
    min: int
    max: int

    @model_validator(mode="after")
    def _range(self) -> RouteTableIDRange:
        if self.min < 1:
            fail("route table indices must be at least 1", "min")
        if self.min > self.max:
            fail("min must not be greater than max", "max")
        if self.max > _U32:
            fail(f"route table index {self.max} too high (max {_U32})", "max")
        return self


class HealthTimeoutOverride(CalicoModel):
    name: Annotated[str, Field(min_length=1)]
    timeout: Duration


KVList = Annotated[str, PlainValidator(_check_kv_list)]
IfaceFilter = Annotated[str, _regex_checker(_IFACE_FILTER, "interface filter")]
PromHost = Annotated[str, _regex_checker(_PROM_HOST, "host")]
Region = Annotated[str, PlainValidator(_check_region)]
Prefixes = Annotated[str, PlainValidator(_check_prefixes)]
Enabled = Literal["Enabled", "Disabled"]


class FelixConfigurationSpec(CalicoModel):
    # Dataplane selection and general behaviour.
    useInternalDataplaneDriver: bool | None = None
    dataplaneDriver: str | None = None
    dataplaneWatchdogTimeout: Duration | None = None
    ipv6Support: bool | None = None
    bpfEnabled: bool | None = None
    nftablesMode: Literal["Enabled", "Disabled", "Auto"] | None = None
    iptablesBackend: Literal["Legacy", "NFT", "Auto"] | None = None
    chainInsertMode: Literal["Insert", "Append"] | None = None
    featureDetectOverride: KVList | None = None
    ipForwarding: Enabled | None = None

    # Refresh intervals and timeouts.
    routeRefreshInterval: Duration | None = None
    interfaceRefreshInterval: Duration | None = None
    iptablesRefreshInterval: Duration | None = None
    iptablesPostWriteCheckInterval: Duration | None = None
    iptablesLockFilePath: str | None = None
    iptablesLockTimeout: Duration | None = None
    iptablesLockProbeInterval: Duration | None = None
    ipsetsRefreshInterval: Duration | None = None
    xdpRefreshInterval: Duration | None = None
    netlinkTimeout: Duration | None = None
    maxIpsetSize: NonNegInt | None = None
    routeSyncDisabled: bool | None = None

    # Endpoints and actions.
    interfacePrefix: Prefixes | None = None
    interfaceExclude: str | None = None
    defaultEndpointToHostAction: Literal["Drop", "Accept", "Return"] | None = None
    iptablesFilterAllowAction: Literal["Accept", "Return"] | None = None
    iptablesMangleAllowAction: Literal["Accept", "Return"] | None = None
    iptablesFilterDenyAction: Literal["Drop", "Reject"] | None = None
    iptablesMarkMask: U32 | None = None
    disableConntrackInvalidCheck: bool | None = None
    failsafeInboundHostPorts: list[ProtoPort] | None = None
    failsafeOutboundHostPorts: list[ProtoPort] | None = None
    kubeNodePortRanges: Annotated[list[NumericPort], Field(max_length=7)] | None = None
    policySyncPathPrefix: str | None = None
    serviceLoopPrevention: Literal["Drop", "Reject", "Disabled"] | None = None
    floatingIPs: Enabled | None = None

    # Logging.
    logPrefix: str | None = None
    logFilePath: str | None = None
    logSeverityFile: LogLevel | None = None
    logSeverityScreen: LogLevel | None = None
    logSeveritySys: LogLevel | None = None
    logDebugFilenameRegex: Regex | None = None
    debugMemoryProfilePath: str | None = None
    debugDisableLogDropping: bool | None = None

    # Status reporting, health and metrics.
    reportingInterval: Duration | None = None
    reportingTTL: Duration | None = None
    endpointReportingEnabled: bool | None = None
    endpointReportingDelay: Duration | None = None
    healthEnabled: bool | None = None
    healthHost: str | None = None
    healthPort: PortNumber | None = None
    healthTimeoutOverrides: list[HealthTimeoutOverride] | None = None
    prometheusMetricsEnabled: bool | None = None
    prometheusMetricsHost: PromHost | None = None
    prometheusMetricsPort: PortNumber | None = None
    prometheusGoMetricsEnabled: bool | None = None
    prometheusProcessMetricsEnabled: bool | None = None
    prometheusWireGuardMetricsEnabled: bool | None = None
    usageReportingEnabled: bool | None = None
    usageReportingInitialDelay: Duration | None = None
    usageReportingInterval: Duration | None = None

    # Flow logs (Calico's names; Felix writes them to files, issue 9).
    flowLogsFlushInterval: Duration | None = None
    flowLogsFileEnabled: bool | None = None
    flowLogsFileDirectory: str | None = None
    flowLogsFileMaxFiles: Annotated[int, int_range(1, 1000)] | None = None
    flowLogsFileMaxFileSizeMB: Annotated[int, int_range(1, 100000)] | None = None

    # OpenStack metadata.
    metadataAddr: str | None = None
    metadataPort: PortNumber | None = None
    openstackRegion: Region | None = None

    # Encapsulation.
    ipipEnabled: bool | None = None
    ipipMTU: MTU | None = None
    vxlanEnabled: bool | None = None
    vxlanMTU: MTU | None = None
    vxlanMTUV6: MTU | None = None
    vxlanPort: PortNumber | None = None
    vxlanVNI: Annotated[int, int_range(1, 2**24 - 1, "vxlanVNI")] | None = None
    allowVXLANPacketsFromWorkloads: bool | None = None
    allowIPIPPacketsFromWorkloads: bool | None = None
    externalNodesList: list[CIDR] | None = None

    # NAT and routes.
    natPortRange: NumericPort | None = None
    natOutgoingAddress: IPv4 | None = None
    natOutgoingExclusions: Literal["IPPoolsOnly", "IPPoolsAndHostIPs"] | None = None
    iptablesNATOutgoingInterfaceFilter: IfaceFilter | None = None
    deviceRouteSourceAddress: IPv4 | None = None
    deviceRouteSourceAddressIPv6: IPv6 | None = None
    deviceRouteProtocol: Annotated[int, int_range(0, 255, "deviceRouteProtocol")] | None = None
    removeExternalRoutes: bool | None = None
    routeSource: Literal["WorkloadIPs", "CalicoIPAM"] | None = None
    routeTableRange: RouteTableRange | None = None
    routeTableRanges: list[RouteTableIDRange] | None = None
    mtuIfacePattern: Regex | None = None
    awsSrcDstCheck: Literal["DoNothing", "Enable", "Disable"] | None = None

    # XDP and BPF.
    xdpEnabled: bool | None = None
    genericXDPEnabled: bool | None = None
    sidecarAccelerationEnabled: bool | None = None
    bpfDisableUnprivileged: bool | None = None
    bpfLogLevel: Literal["Off", "Info", "Debug"] | None = None
    bpfDataIfacePattern: Regex | None = None
    bpfConnectTimeLoadBalancingEnabled: bool | None = None
    bpfConnectTimeLoadBalancing: Literal["TCP", "Enabled", "Disabled"] | None = None
    bpfExternalServiceMode: Literal["Tunnel", "DSR"] | None = None
    bpfExtToServiceConnmark: U32 | None = None
    bpfKubeProxyIptablesCleanupEnabled: bool | None = None
    bpfKubeProxyMinSyncPeriod: Duration | None = None
    bpfKubeProxyEndpointSlicesEnabled: bool | None = None

    # WireGuard.
    wireguardEnabled: bool | None = None
    wireguardEnabledV6: bool | None = None
    wireguardListeningPort: PortNumber | None = None
    wireguardListeningPortV6: PortNumber | None = None
    wireguardRoutingRulePriority: Annotated[int, int_range(1, 32765, "wireguardRoutingRulePriority")] | None = None
    wireguardInterfaceName: IfName | None = None
    wireguardInterfaceNameV6: IfName | None = None
    wireguardMTU: MTU | None = None
    wireguardMTUV6: MTU | None = None
    wireguardHostEncryptionEnabled: bool | None = None
    wireguardPersistentKeepAlive: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> FelixConfigurationSpec:
        if self.routeTableRange is not None and self.routeTableRanges is not None:
            fail("routeTableRange cannot be set together with routeTableRanges", "routeTableRange")
        if self.routeTableRanges:
            total = sum(r.max - r.min + 1 for r in self.routeTableRanges)
            if total > 0xFFFF:
                fail(f"routeTableRanges target {total} tables; the limit is {0xFFFF}", "routeTableRanges")
        for i, cidr in enumerate(self.externalNodesList or ()):
            if cidr_version(cidr) != 4:
                fail(f"externalNodesList entries must be IPv4 (got {cidr})", "externalNodesList", i)
        return self


class FelixConfiguration(Resource):
    KIND: ClassVar[str] = "FelixConfiguration"
    PLURAL: ClassVar[str] = "felixconfigurations"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("felixconfiguration", "felixconfig", "felixconfigs")

    kind: Literal["FelixConfiguration"] = "FelixConfiguration"
    spec: FelixConfigurationSpec = Field(default_factory=empty_spec(FelixConfigurationSpec))

"""Subnets and local endpoints → dnsmasq's configuration (pure).

In: the subnet records (id → `SubnetRecord`), this host's `DhcpHost`s and the agent's `Settings`. Out: a
`DnsmasqConfig`: the gateway addresses the agent's own interface must hold, the `--dhcp-range`s, the text of
the hosts file (`--dhcp-hostsfile`: MAC → fixed address) and of the options file (`--dhcp-optsfile`: per
subnet tag), and the problems found (subnets that cannot be served, each with the reason). `argv()` builds the
command line. What needs a restart of dnsmasq (ranges, addresses, RA) is `DnsmasqConfig.restart_key`; the two
files are reread on SIGHUP.

Routed model (as networking-calico's agent): each subnet's gateway address sits on one interface the agent
owns, without a prefix route; dnsmasq treats requests arriving on every `<prefix>*` (tap) interface as if
they came in on that one (`--bridge-interface`), so it finds the subnet by the gateway address and answers on
the tap. Per subnet, by Neutron's modes:

    IPv4                        static range: fixed addresses only; router = gateway, DNS servers, host routes
                                as classless static routes (121, and 249 for old Windows) plus the default
                                route via the gateway (a client given 121 ignores the router option), MTU
    IPv6 dhcpv6-stateful / none static range (DHCPv6 fixed address) + RA with M bit
    IPv6 dhcpv6-stateless       ra-stateless: RA with A and O bits (SLAAC address), DHCPv6 for DNS servers
                                (only while one IPv6 subnet is served: see `_host_lines`)
    IPv6 slaac                  ra-only: RA with A bit (SLAAC address)

Every IPv6 prefix is advertised `off-link`: the VM sends everything to its router (the host), which routes
it, as for IPv4 (proxy ARP). A subnet is skipped, with a problem, when it has no gateway or one outside it, an
IPv6 prefix shorter than /64 (dnsmasq refuses those) or longer than /64 with SLAAC, or when it overlaps a
subnet already served (lower id first).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from calico.dhcp.state import DhcpHost
from calico.resources.dhcp import DHCPV6_STATELESS, SLAAC, SubnetRecord

__all__ = ["DnsmasqConfig", "Paths", "Settings", "argv", "render"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_MODE_V6 = {None: "static", "dhcpv6-stateful": "static", DHCPV6_STATELESS: "ra-stateless", SLAAC: "ra-only"}
_MIN_V6_PREFIX = 64  # dnsmasq refuses shorter IPv6 ranges


@dataclass(frozen=True)
class Settings:
    interface: str = "dhcp.calico"  # the agent's own interface (holds the gateway addresses)
    interface_prefix: str = "tap"  # workload interfaces (Felix's InterfacePrefix for OpenStack)
    lease_seconds: int = 86400  # Neutron's default dhcp_lease_duration
    mtu: int | None = None  # DHCP option 26 and the RA MTU, when set
    user: str | None = None  # dnsmasq drops privileges to this user (None: dnsmasq's default)
    log_dhcp: bool = False  # dnsmasq logs every option it sends


@dataclass(frozen=True)
class Paths:
    """dnsmasq's files, under the agent's state directory."""

    state_dir: Path

    @property
    def hosts(self) -> Path:
        return self.state_dir / "hosts"

    @property
    def opts(self) -> Path:
        return self.state_dir / "opts"

    @property
    def leases(self) -> Path:
        return self.state_dir / "leases"

    @property
    def pid(self) -> Path:
        return self.state_dir / "dnsmasq.pid"


@dataclass(frozen=True)
class DnsmasqConfig:
    addresses: tuple[str, ...]  # "gateway/prefixlen" on the agent's own interface
    ranges: tuple[str, ...]  # --dhcp-range values
    hosts: str
    opts: str
    problems: tuple[str, ...] = ()

    @property
    def ipv6(self) -> bool:
        return any(":" in a for a in self.addresses)

    @property
    def restart_key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What dnsmasq reads only at start: a change here needs a restart, anything else a SIGHUP."""
        return self.addresses, self.ranges


@dataclass(frozen=True)
class _Served:
    subnet_id: str
    record: SubnetRecord
    net: IPNetwork

    @property
    def tag(self) -> str:
        return f"subnet-{self.subnet_id}"


def render(subnets: Mapping[str, SubnetRecord], hosts: Iterable[DhcpHost], settings: Settings) -> DnsmasqConfig:
    served, problems = _served(subnets)
    ranges = [_range(s, settings) for s in served]
    addresses = [f"{s.record.gateway_ip}/{s.net.prefixlen}" for s in served]
    opts = [line for s in served for line in _options(s, settings)]
    return DnsmasqConfig(tuple(addresses), tuple(ranges), _lines(_host_lines(served, hosts)), _lines(opts),
                         tuple(problems))


def argv(config: DnsmasqConfig, paths: Paths, settings: Settings, binary: str = "dnsmasq") -> list[str]:
    """dnsmasq's command line: in the foreground, DHCP (and RA) only, nothing read from /etc."""
    own, taps = settings.interface, settings.interface_prefix + "*"
    out = [
        binary, "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0",
        "--log-facility=-", f"--pid-file={paths.pid}", f"--dhcp-leasefile={paths.leases}",
        f"--dhcp-hostsfile={paths.hosts}", f"--dhcp-optsfile={paths.opts}",
        # The taps are listed too: dnsmasq then joins DHCPv6's multicast group on each of them.
        f"--interface={own}", f"--interface={taps}", f"--bridge-interface={own},{taps}",
        *(f"--dhcp-range={r}" for r in config.ranges),
    ]
    if config.ipv6:
        out += ["--enable-ra", "--quiet-ra"]
        if settings.mtu:
            out.append(f"--ra-param={own},mtu:{settings.mtu},0")
    if settings.user:
        out.append(f"--user={settings.user}")
    if settings.log_dhcp:
        out.append("--log-dhcp")
    return out


def _served(subnets: Mapping[str, SubnetRecord]) -> tuple[list[_Served], list[str]]:
    served: list[_Served] = []
    problems = []
    for subnet_id in sorted(subnets):
        record = subnets[subnet_id]
        net = record.network
        why = _cannot_serve(record, net, served)
        if why:
            problems.append(f"subnet {subnet_id} ({net}) is not served: {why}")
        else:
            served.append(_Served(subnet_id, record, net))
    return served, problems


def _cannot_serve(record: SubnetRecord, net: IPNetwork, served: list[_Served]) -> str | None:
    if not record.gateway_ip:
        return "it has no gateway_ip (the agent answers from the gateway address)"
    if ipaddress.ip_address(record.gateway_ip) not in net:
        return f"its gateway {record.gateway_ip} is outside it"
    if net.version == 6 and net.prefixlen > _MIN_V6_PREFIX and record.ipv6_address_mode in (SLAAC, DHCPV6_STATELESS):
        return f"SLAAC needs a /64 prefix, not /{net.prefixlen}"
    if net.version == 6 and net.prefixlen < _MIN_V6_PREFIX:
        return f"dnsmasq serves IPv6 prefixes of /{_MIN_V6_PREFIX} or longer, not /{net.prefixlen}"
    for other in served:
        if other.net.version == net.version and other.net.overlaps(net):
            return f"it overlaps subnet {other.subnet_id} ({other.net})"
    return None


def _range(s: _Served, settings: Settings) -> str:
    lease = f"{settings.lease_seconds}s"
    if s.net.version == 4:
        return f"set:{s.tag},{s.net.network_address},static,{s.net.netmask},{lease}"
    mode = _MODE_V6[s.record.ipv6_address_mode]
    return f"set:{s.tag},{s.net.network_address},{mode},off-link,{s.net.prefixlen},{lease}"


def _options(s: _Served, settings: Settings) -> list[str]:
    tag, record = f"tag:{s.tag}", s.record
    dns = [d for d in record.dns_servers if ipaddress.ip_address(d).version == s.net.version]
    if s.net.version == 6:
        return [f"{tag},option6:dns-server,{','.join(f'[{d}]' for d in dns)}"] if dns else []
    out = [f"{tag},option:router,{record.gateway_ip}"]
    if dns:
        out.append(f"{tag},option:dns-server,{','.join(dns)}")
    if record.host_routes:
        routes = [f"{r.destination},{r.nexthop}" for r in record.host_routes]
        if not any(r.destination == "0.0.0.0/0" for r in record.host_routes):
            routes.append(f"0.0.0.0/0,{record.gateway_ip}")
        out.append(f"{tag},option:classless-static-route,{','.join(routes)}")
        out.append(f"{tag},249,{','.join(routes)}")  # Microsoft's pre-RFC 3442 number for the same
    if settings.mtu:
        out.append(f"{tag},option:mtu,{settings.mtu}")
    return out


def _host_lines(served: list[_Served], hosts: Iterable[DhcpHost]) -> list[str]:
    """`mac,address` (IPv6 in brackets) for each fixed address in a subnet served with fixed addresses.

    No `set:` tags: an information-request (stateless DHCPv6) carries no address, so with several IPv6 subnets
    dnsmasq cannot tell whose options apply; tagging the host's entries would say, but dnsmasq 2.90 crashed
    (SIGSEGV) on a SIGHUP with such entries in our tests."""
    by_net = {s.net: s for s in served}
    lengths = sorted({net.prefixlen for net in by_net}, reverse=True)
    lines = []
    for host in sorted(hosts, key=lambda h: h.name):
        for addr in host.addresses:
            ip = ipaddress.ip_address(addr)
            s = _subnet_of(ip, by_net, lengths)
            if s is None:
                continue
            if ip.version == 4:
                lines.append(f"{host.mac},{ip}")
            elif _MODE_V6[s.record.ipv6_address_mode] == "static":
                lines.append(f"{host.mac},[{ip}]")
    return lines


def _subnet_of(ip: IPAddress, by_net: Mapping[IPNetwork, _Served], lengths: list[int]) -> _Served | None:
    for plen in lengths:  # one lookup per distinct prefix length, not per subnet
        if plen <= ip.max_prefixlen:
            s = by_net.get(ipaddress.ip_network(f"{ip}/{plen}", strict=False))
            if s is not None:
                return s
    return None


def _lines(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)

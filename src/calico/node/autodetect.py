"""Calico's IP autodetection methods, as pure selection over a snapshot of the host's interfaces.

In: a method string (`IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD`), the host's interfaces with
their addresses, and for `can-reach` the source address the kernel chose for the destination. Out: the
chosen interface and address with its prefix length (`198.19.1.3/24`), or `NoAddress` saying why none fits.

Methods (Calico's names and semantics):

    first-found              the first global unicast address, skipping Calico's default exclusion list
    interface=RE[,RE...]     the first address on an interface whose name matches one of the regexes
    skip-interface=RE[,...]  first-found, also skipping interfaces matching one of the regexes
    can-reach=DEST           the address the kernel would use as source towards DEST (IP or host name)
    cidr=CIDR[,CIDR...]      the first address inside one of the CIDRs

Regexes are searched, not anchored (`interface=eth.*` also matches `veth0`), as Calico's Go regexps are.
Interfaces are scanned from the highest interface index down and addresses in kernel order, which is the
order Calico scans them in. Only global unicast addresses qualify (no loopback, link-local, multicast,
unspecified or broadcast address); private and ULA addresses do.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_EXCLUDED_INTERFACES",
    "CanReach",
    "CidrMatch",
    "Detected",
    "FirstFound",
    "HostInterface",
    "InterfaceMatch",
    "Method",
    "MethodError",
    "NoAddress",
    "SkipInterface",
    "parse_method",
    "select",
]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Interfaces first-found (and skip-interface) never choose: Calico's own, container bridges, virtual links.
DEFAULT_EXCLUDED_INTERFACES: tuple[str, ...] = (
    r"^docker.*", r"^cbr.*", r"^dummy.*", r"^virbr.*", r"^lxcbr.*", r"^veth.*", r"^lo",
    r"^cali.*", r"^tunl.*", r"^flannel.*", r"^kube-ipvs.*", r"^cni.*",
    r"^vxlan\.calico.*", r"^vxlan-v6\.calico.*", r"^wireguard\.cali.*", r"^wg-v6\.cali.*",
    r"^nodelocaldns.*",
    r"^dhcp\.calico$",  # calico-dhcp-agent's bridge: it holds OpenStack subnets' gateway addresses
)


class MethodError(ValueError):
    """The method string is malformed; the message says which part."""


class NoAddress(Exception):
    """No address fits the method; the message says why."""


@dataclass(frozen=True)
class HostInterface:
    name: str
    index: int
    addresses: tuple[IPInterface, ...]


@dataclass(frozen=True)
class Detected:
    interface: str
    address: IPInterface

    def __str__(self) -> str:
        return str(self.address)


@dataclass(frozen=True)
class FirstFound:
    def describe(self) -> str:
        return "first-found"


@dataclass(frozen=True)
class InterfaceMatch:
    patterns: tuple[re.Pattern[str], ...]

    def describe(self) -> str:
        return "interface=" + ",".join(p.pattern for p in self.patterns)


@dataclass(frozen=True)
class SkipInterface:
    patterns: tuple[re.Pattern[str], ...]

    def describe(self) -> str:
        return "skip-interface=" + ",".join(p.pattern for p in self.patterns)


@dataclass(frozen=True)
class CanReach:
    destination: str

    def describe(self) -> str:
        return f"can-reach={self.destination}"


@dataclass(frozen=True)
class CidrMatch:
    networks: tuple[IPNetwork, ...]

    def describe(self) -> str:
        return "cidr=" + ",".join(str(n) for n in self.networks)


Method = FirstFound | InterfaceMatch | SkipInterface | CanReach | CidrMatch

_DEFAULT_EXCLUDED = tuple(re.compile(p) for p in DEFAULT_EXCLUDED_INTERFACES)


def _split(value: str, what: str) -> list[str]:
    parts = [p.strip() for p in value.split(",")]
    if not all(parts):
        raise MethodError(f"empty {what} in the list {value!r}")
    return parts


def _patterns(value: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for text in _split(value, "regex"):
        try:
            out.append(re.compile(text))
        except re.error as e:
            raise MethodError(f"invalid interface regex {text!r}: {e}") from None
    return tuple(out)


def parse_method(text: str) -> Method:
    """One method string; the empty string means first-found (Calico's default)."""
    s = text.strip()
    if s in ("", "first-found"):
        return FirstFound()
    name, eq, value = s.partition("=")
    if name == "kubernetes-internal-ip":
        raise MethodError("kubernetes-internal-ip needs a Kubernetes Node, and there is none here")
    if not eq or not value.strip():
        raise MethodError(
            f"unknown method {s!r}: expected first-found, interface=REGEX, skip-interface=REGEX, "
            "can-reach=DESTINATION or cidr=CIDR"
        )
    if name == "interface":
        return InterfaceMatch(_patterns(value))
    if name == "skip-interface":
        return SkipInterface(_patterns(value))
    if name == "can-reach":
        return CanReach(value.strip())
    if name == "cidr":
        nets = []
        for c in _split(value, "CIDR"):
            try:
                nets.append(ipaddress.ip_network(c, strict=False))
            except ValueError:
                raise MethodError(f"invalid CIDR {c!r}") from None
        return CidrMatch(tuple(nets))
    raise MethodError(f"unknown method {name!r}: expected first-found, interface, skip-interface, can-reach or cidr")


def is_global_unicast(ip: IPAddress) -> bool:
    """Go's IP.IsGlobalUnicast: private ranges and ULAs count, link-local and loopback do not."""
    if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return False
    return not (ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"))


def _matches(name: str, patterns: Sequence[re.Pattern[str]]) -> bool:
    return any(p.search(name) for p in patterns)


def _first(
    interfaces: Sequence[HostInterface],
    version: int,
    include: Sequence[re.Pattern[str]] = (),
    exclude: Sequence[re.Pattern[str]] = (),
    networks: Sequence[IPNetwork] = (),
) -> Detected | None:
    for iface in sorted(interfaces, key=lambda i: i.index, reverse=True):
        if (include and not _matches(iface.name, include)) or _matches(iface.name, exclude):
            continue
        for addr in iface.addresses:
            if addr.version != version or not is_global_unicast(addr.ip):
                continue
            if networks and not any(addr.ip in n for n in networks if n.version == version):
                continue
            return Detected(iface.name, addr)
    return None


def select(
    method: Method, interfaces: Sequence[HostInterface], version: int, reach_source: IPAddress | None = None
) -> Detected:
    """The address `method` picks among `interfaces` for IPv`version`; raises NoAddress.

    For CanReach, `reach_source` is the kernel's source address towards the destination: the answer is that
    address with the prefix length of the interface that holds it."""
    found: Detected | None
    if isinstance(method, FirstFound):
        found = _first(interfaces, version, exclude=_DEFAULT_EXCLUDED)
    elif isinstance(method, InterfaceMatch):
        found = _first(interfaces, version, include=method.patterns)
    elif isinstance(method, SkipInterface):
        found = _first(interfaces, version, exclude=_DEFAULT_EXCLUDED + method.patterns)
    elif isinstance(method, CidrMatch):
        found = _first(interfaces, version, networks=method.networks)
    else:
        if reach_source is None:
            raise NoAddress(f"no IPv{version} route towards {method.destination}")
        found = next(
            (Detected(i.name, a) for i in interfaces for a in i.addresses if a.ip == reach_source), None
        )
        if found is None:
            raise NoAddress(
                f"the source address {reach_source} towards {method.destination} is on no local interface"
            )
    if found is None:
        raise NoAddress(f"no IPv{version} address on the host's interfaces fits {method.describe()}")
    return found

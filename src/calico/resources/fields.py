"""Shared validated field types for Calico resources.

In: raw values as decoded from YAML/JSON (anything). Out: canonical Python values (names, label
maps, CIDR strings with host bits masked, port specs, protocol names, AS numbers as int, Go-style
duration strings as Go prints them) or a ValueError whose message names the bad value.
Each type is an `Annotated[...]` alias usable directly as a pydantic field type.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import PlainSerializer, PlainValidator

from calico.resources.errors import show
from calico.selector import SelectorError
from calico.selector import parse as parse_selector

# ---------------------------------------------------------------------------------------------
# Names and labels (Kubernetes' DNS-1123 and qualified-name rules, as Calico uses them).

_LABEL_FMT = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS_LABEL = re.compile(rf"{_LABEL_FMT}\Z")
DNS_SUBDOMAIN = re.compile(rf"{_LABEL_FMT}(?:\.{_LABEL_FMT})*\Z")
_QNAME_PART = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_PORT_NAME = re.compile(r"[a-z0-9](?:-?[a-z0-9])*\Z")  # no leading/trailing/double '-'
_HAS_LETTER = re.compile(r"[a-z]")

SUBDOMAIN_MSG = (
    "must consist of lower case alphanumeric characters, '-' or '.', and start and end with an alphanumeric character"
)
LABEL_MSG = (
    "must consist of lower case alphanumeric characters or '-', and start and end with an alphanumeric character"
)


def _need_str(value: Any, what: str = "value") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string (got {show(value)})")
    return value


def check_subdomain(value: Any, what: str = "name") -> str:
    """DNS-1123 subdomain: the rule for most resource names."""
    s = _need_str(value, what)
    if not s:
        raise ValueError(f"{what} must not be empty")
    if len(s) > 253:
        raise ValueError(f"{what} {show(s)} is {len(s)} characters long; the limit is 253")
    if not DNS_SUBDOMAIN.match(s):
        raise ValueError(f"invalid {what} {show(s)}: {SUBDOMAIN_MSG}")
    return s


def check_label_name(value: Any, what: str = "name") -> str:
    """DNS-1123 label: namespaces and tier names (no dots, at most 63 characters)."""
    s = _need_str(value, what)
    if not s:
        raise ValueError(f"{what} must not be empty")
    if len(s) > 63:
        raise ValueError(f"{what} {show(s)} is {len(s)} characters long; the limit is 63")
    if not DNS_LABEL.match(s):
        raise ValueError(f"invalid {what} {show(s)}: {LABEL_MSG}")
    return s


@lru_cache(maxsize=4096)  # label keys and values repeat across thousands of endpoints
def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes qualified name (`[prefix/]name`), or None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return "prefix before '/' must not be empty"
        if len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix):
            return "prefix before '/' must be a DNS subdomain (lower case alphanumerics, '-', '.')"
    if not name:
        return "name part must not be empty"
    if len(name) > 63:
        return "name part must be at most 63 characters"
    if not _QNAME_PART.match(name):
        return "name part must consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric"
    return None


@lru_cache(maxsize=4096)  # label keys and values repeat across thousands of endpoints
def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63:
        return "must be at most 63 characters"
    if not _QNAME_PART.match(value):
        return "must be empty or consist of alphanumerics, '-', '_' or '.', and start and end with an alphanumeric"
    return None


def check_labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"labels must be a mapping of strings to strings (got {show(value)})")
    for k, v in value.items():
        if not isinstance(k, str):
            raise ValueError(f"label key {show(k)} must be a string")
        why = qualified_name_problem(k)
        if why:
            raise ValueError(f"invalid label key {show(k)}: {why}")
        if not isinstance(v, str):
            raise ValueError(f"label {show(k)} value must be a string (got {show(v)})")
        why = label_value_problem(v)
        if why:
            raise ValueError(f"invalid value {show(v)} for label {show(k)}: {why}")
    return dict(value)


_ANNOTATION_LIMIT = 256 * 1024  # Kubernetes' total annotation size limit, which Calico applies too


def check_annotations(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"annotations must be a mapping of strings to strings (got {show(value)})")
    total = 0
    for k, v in value.items():
        if not isinstance(k, str):
            raise ValueError(f"annotation key {show(k)} must be a string")
        why = qualified_name_problem(k.lower())
        if why:
            raise ValueError(f"invalid annotation key {show(k)}: {why}")
        if not isinstance(v, str):
            raise ValueError(f"annotation {show(k)} value must be a string (got {show(v)})")
        total += len(k) + len(v)
    if total > _ANNOTATION_LIMIT:
        raise ValueError(f"annotations total {total} bytes; the limit is {_ANNOTATION_LIMIT}")
    return dict(value)


def check_port_name(value: Any) -> str:
    """IANA service name, as Kubernetes checks port names: <=15 chars, [a-z0-9-], a letter."""
    s = _need_str(value, "port name")
    if not s or len(s) > 15 or not _PORT_NAME.match(s) or not _HAS_LETTER.search(s):
        raise ValueError(
            f"invalid port name {show(s)}: must be 1-15 lower case alphanumerics or '-', contain a letter, "
            "and not start, end or repeat '-'"
        )
    return s


Name = Annotated[str, PlainValidator(check_subdomain)]
LabelName = Annotated[str, PlainValidator(check_label_name)]
Labels = Annotated[dict[str, str], PlainValidator(check_labels)]
Annotations = Annotated[dict[str, str], PlainValidator(check_annotations)]
PortName = Annotated[str, PlainValidator(check_port_name)]

# ---------------------------------------------------------------------------------------------
# IP addresses and networks.

_DIGITS = re.compile(r"[0-9]{1,3}\Z")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # Python would accept scope IDs ("fe80::1%eth0"); Calico's Go parser does not.
    if "%" in text or not text or text != text.strip():
        raise ValueError
    return ipaddress.ip_address(text)


def parse_ip(value: Any, what: str = "IP address") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    s = _need_str(value, what)
    try:
        return _ip(s)
    except ValueError:
        raise ValueError(f"invalid {what} {show(s)}") from None


def parse_interface(value: Any, what: str = "CIDR") -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """IP or IP/prefix, host bits kept. Only a decimal prefix length is accepted (not a netmask)."""
    s = _need_str(value, what)
    addr, slash, plen = s.partition("/")
    try:
        ip = _ip(addr)
        if not slash:
            return ipaddress.ip_interface(ip)
        if not _DIGITS.match(plen) or int(plen) > ip.max_prefixlen:
            raise ValueError
        return ipaddress.ip_interface((ip, int(plen)))
    except ValueError:
        raise ValueError(f"invalid {what} {show(s)}") from None


@lru_cache(maxsize=8192)
def _cidr_cached(s: str) -> str:
    return str(parse_interface(s).network)


def check_cidr(value: Any) -> str:
    """IP or CIDR -> canonical masked network text (`10.0.0.1/8` -> `10.0.0.0/8`, IP -> /32 or /128)."""
    s = _need_str(value, "CIDR")
    return _cidr_cached(s)


def check_ip(value: Any) -> str:
    return str(parse_ip(value))


def check_ipv4(value: Any) -> str:
    ip = parse_ip(value, "IPv4 address")
    if ip.version != 4:
        raise ValueError(f"{show(value)} is not an IPv4 address")
    return str(ip)


def check_ipv6(value: Any) -> str:
    ip = parse_ip(value, "IPv6 address")
    if ip.version != 6:
        raise ValueError(f"{show(value)} is not an IPv6 address")
    return str(ip)


def _check_if_addr(value: Any, version: int | None) -> str:
    """An address with an optional prefix length whose host bits are kept (node addresses)."""
    s = _need_str(value, "address")
    iface = parse_interface(s, "address")
    if version is not None and iface.version != version:
        raise ValueError(f"{show(s)} is not an IPv{version} address")
    return str(iface) if "/" in s else str(iface.ip)


def check_ipv4_iface(value: Any) -> str:
    return _check_if_addr(value, 4)


def check_ipv6_iface(value: Any) -> str:
    return _check_if_addr(value, 6)


def check_ip_iface(value: Any) -> str:
    return _check_if_addr(value, None)


def cidr_version(cidr: str) -> int:
    """4 or 6 for a canonical CIDR produced by `check_cidr`."""
    return 6 if ":" in cidr else 4


CIDR = Annotated[str, PlainValidator(check_cidr)]
IP = Annotated[str, PlainValidator(check_ip)]
IPv4 = Annotated[str, PlainValidator(check_ipv4)]
IPv6 = Annotated[str, PlainValidator(check_ipv6)]
IPv4Iface = Annotated[str, PlainValidator(check_ipv4_iface)]
IPv6Iface = Annotated[str, PlainValidator(check_ipv6_iface)]
IPIface = Annotated[str, PlainValidator(check_ip_iface)]

# ---------------------------------------------------------------------------------------------
# Ports and protocols.

PROTOCOL_NAMES = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "icmpv6": "ICMPv6", "sctp": "SCTP", "udplite": "UDPLite"}
# Calico lets only these carry ports (its message: "must set protocol to TCP or UDP or SCTP").
PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP", 6, 17, 132})
ICMP_PROTOCOLS = {"ICMP": 4, 1: 4, "ICMPv6": 6, 58: 6}  # protocol -> the IP version it implies


def check_protocol(value: Any) -> int | str:
    """Calico protocol: a name (any case, stored in Calico's spelling) or a number 1-255."""
    if isinstance(value, bool):
        raise ValueError(f"invalid protocol {show(value)}")
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if isinstance(value, int):
        if not 1 <= value <= 255:
            raise ValueError(f"invalid protocol number {value}: must be 1-255")
        return value
    if isinstance(value, str):
        canon = PROTOCOL_NAMES.get(value.lower())
        if canon:
            return canon
    raise ValueError(f"invalid protocol {show(value)}: must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255")


def _port_number(value: Any, text: str) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"invalid port {text}: port number must be between 1 and 65535")
    return int(value)


def check_rule_port(value: Any) -> int | str:
    """A rule port: number, "min:max" range (stored as "min:max", or a number when min == max),
    or a named port."""
    if isinstance(value, bool):
        raise ValueError(f"invalid port {show(value)}")
    if isinstance(value, int):
        return _port_number(value, str(value))
    if not isinstance(value, str):
        raise ValueError(f'invalid port {show(value)}: must be a number, "min:max" or a port name')
    if value.isascii() and value.isdigit():
        return _port_number(int(value), show(value))
    lo, colon, hi = value.partition(":")
    if colon:
        if not (lo.isascii() and lo.isdigit() and hi.isascii() and hi.isdigit()):
            raise ValueError(f'invalid port range {show(value)}: must be "min:max" with numbers 1-65535')
        a = _port_number(int(lo), f"range {show(value)}")
        b = _port_number(int(hi), f"range {show(value)}")
        if a > b:
            raise ValueError(f"invalid port range {show(value)}: min > max")
        return a if a == b else f"{a}:{b}"
    try:
        return check_port_name(value)
    except ValueError:
        raise ValueError(
            f'invalid port {show(value)}: must be a number 1-65535, "min:max" or a port name '
            "(1-15 lower case alphanumerics or '-', with a letter)"
        ) from None


def check_numeric_port(value: Any) -> int | str:
    """A port or port range with no names (Felix's node port ranges, NAT port range)."""
    port = check_rule_port(value)
    if isinstance(port, str) and ":" not in port:
        raise ValueError(f"invalid port {show(value)}: named ports are not allowed here")
    return port


def check_port_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid port {show(value)}: must be a number 1-65535")
    return _port_number(value, str(value))


Protocol = Annotated[int | str, PlainValidator(check_protocol)]
RulePort = Annotated[int | str, PlainValidator(check_rule_port)]
NumericPort = Annotated[int | str, PlainValidator(check_numeric_port)]
PortNumber = Annotated[int, PlainValidator(check_port_number)]

# ---------------------------------------------------------------------------------------------
# Interfaces, MACs, AS numbers, durations.

_BAD_IFNAME_CHARS = re.compile(r"[\s/:\x00-\x1f\x7f]")


def check_ifname(value: Any) -> str:
    """A Linux interface name: 1-15 bytes, not "." or "..", no '/', ':' or whitespace."""
    s = _need_str(value, "interface name")
    if not s or len(s.encode()) > 15 or s in (".", "..") or _BAD_IFNAME_CHARS.search(s):
        raise ValueError(f"invalid interface name {show(s)}: must be 1-15 characters with no '/', ':' or whitespace")
    return s


def check_hep_ifname(value: Any) -> str:
    """Host endpoint interface: a Linux interface name, or "*" for all of the host's interfaces."""
    return "*" if value == "*" else check_ifname(value)


_MAC_SEP = re.compile(r"(?:[0-9A-Fa-f]{2}([:-]))(?:[0-9A-Fa-f]{2}\1)*[0-9A-Fa-f]{2}\Z")
_MAC_DOT = re.compile(r"[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4})*\Z")


def check_mac(value: Any) -> str:
    """A MAC address in any of Go's `net.ParseMAC` forms (6, 8 or 20 bytes), stored lower case
    colon-separated."""
    s = _need_str(value, "MAC address")
    if _MAC_SEP.match(s):
        hexdigits = s.replace(":", "").replace("-", "")
    elif _MAC_DOT.match(s):
        hexdigits = s.replace(".", "")
    else:
        hexdigits = ""
    if len(hexdigits) not in (12, 16, 40):
        raise ValueError(f"invalid MAC address {show(s)}")
    h = hexdigits.lower()
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2))


_ASN_MAX = 4294967295


def check_as_number(value: Any) -> int:
    """AS number 0-4294967295, as a number or text; "a.b" (asdot) means a*65536+b."""
    if isinstance(value, bool):
        raise ValueError(f"invalid AS number {show(value)}")
    if isinstance(value, float):
        # YAML reads an unquoted 1.10 as the float 1.1, losing the dotted form's meaning.
        raise ValueError(f'invalid AS number {show(value)}: write dotted AS numbers in quotes, e.g. "1.10"')
    if isinstance(value, str):
        s = value
        if s.isascii() and s.isdigit():
            value = int(s)
        else:
            hi, dot, lo = s.partition(".")
            if not (dot and hi.isascii() and hi.isdigit() and lo.isascii() and lo.isdigit()):
                raise ValueError(f'invalid AS number {show(s)}: must be a number or "a.b"')
            if int(hi) > 65535 or int(lo) > 65535:
                raise ValueError(f'invalid AS number {show(s)}: each part of "a.b" must be 0-65535')
            value = int(hi) * 65536 + int(lo)
    if not isinstance(value, int) or not 0 <= value <= _ASN_MAX:
        raise ValueError(f'invalid AS number {show(value)}: must be 0-{_ASN_MAX} or "a.b"')
    return value


_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([a-z\u00b5\u03bc]+)")
_MAX_NS = 2**63 - 1


def parse_duration(text: str) -> int:
    """Go `time.ParseDuration` (non-negative only): "1m30s", "1.5h", "300ms", "0" -> nanoseconds."""
    s = text
    if s.startswith("+"):
        s = s[1:]
    if s == "0":
        return 0
    if not s or s.startswith("-"):
        raise ValueError
    total, pos = 0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m or (not m.group(1) and not m.group(2)) or m.group(3) not in _DURATION_UNITS:
            raise ValueError
        unit = _DURATION_UNITS[m.group(3)]
        whole, frac = int(m.group(1) or "0"), m.group(2) or ""
        total += whole * unit + (int(frac) * unit // 10 ** len(frac) if frac else 0)
        if total > _MAX_NS:
            raise ValueError
        pos = m.end()
    return total


def _frac(v: int, prec: int) -> str:
    whole, part = divmod(v, 10**prec)
    digits = f"{part:0{prec}d}".rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def format_duration(ns: int) -> str:
    """Go `time.Duration.String()`: 90s -> "1m30s", 1h -> "1h0m0s", 0 -> "0s"."""
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _frac(ns, 3) + "\u00b5s"
    if ns < 1_000_000_000:
        return _frac(ns, 6) + "ms"
    secs, sub = divmod(ns, 1_000_000_000)
    hours, rest = divmod(secs, 3600)
    mins, secs = divmod(rest, 60)
    out = f"{hours}h" if hours else ""
    if hours or mins:
        out += f"{mins}m"
    return out + _frac(secs * 1_000_000_000 + sub, 9) + "s"


def check_duration(value: Any) -> str:
    """A Go duration string, stored as Go prints it (so "90s" becomes "1m30s")."""
    s = _need_str(value, "duration")
    try:
        return format_duration(parse_duration(s))
    except ValueError:
        raise ValueError(
            f'invalid duration {show(s)}: must be like "90s", "1m30s", "500ms" or "1h" (non-negative)'
        ) from None


def duration_seconds(text: str) -> float:
    """Seconds in a (validated) duration string, for consumers of the resources."""
    return parse_duration(text) / 1e9


def check_order(value: Any) -> float:
    """Policy/tier order: any finite number, stored as float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"order must be a number (got {show(value)})")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"order must be a finite number (got {show(value)})")
    return f


def check_regex(value: Any) -> str:
    """A regular expression (checked with Python's engine, close enough to Go's RE2 for this)."""
    s = _need_str(value, "regular expression")
    try:
        re.compile(s)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"invalid regular expression {show(s)}: {exc}") from None
    return s


LogLevel = Literal["Trace", "Debug", "Info", "Warning", "Error", "Fatal"]
Regex = Annotated[str, PlainValidator(check_regex)]
IfName = Annotated[str, PlainValidator(check_ifname)]
HostIfName = Annotated[str, PlainValidator(check_hep_ifname)]
MAC = Annotated[str, PlainValidator(check_mac)]
ASNumber = Annotated[int, PlainValidator(check_as_number)]
Duration = Annotated[str, PlainValidator(check_duration)]


def _order_out(value: float) -> int | float:
    # Go prints a whole float64 without a fraction ("order: 100"); keep that look in output.
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


Order = Annotated[float, PlainValidator(check_order), PlainSerializer(_order_out)]


def int_range(lo: int, hi: int, what: str = "value") -> PlainValidator:
    """Validator for `Annotated[int, int_range(lo, hi)]`: an integer lo..hi, bools refused (as Go's
    JSON decoding refuses them)."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} must be an integer {lo}-{hi} (got {show(value)})")
        if not lo <= value <= hi:
            raise ValueError(f"{what} {value} is out of range: must be {lo}-{hi}")
        return value

    return PlainValidator(check)


# ---------------------------------------------------------------------------------------------
# Selectors (parsed by calico.selector; stored in canonical text).

_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


@lru_cache(maxsize=8192)
def canonical_selector(text: str) -> str:
    """Canonical selector text; cached because the same few selectors recur across resources."""
    return str(parse_selector(text))


def uses_global(canonical: str) -> bool:
    """Whether a canonical selector calls global() (quoted label values don't count)."""
    return "global()" in _QUOTED.sub("", canonical)


def _selector(value: Any) -> str:
    s = _need_str(value, "selector")
    try:
        return canonical_selector(s)
    except SelectorError as exc:
        raise ValueError(f"invalid selector {show(s)}: {exc}") from None


def check_selector(value: Any) -> str:
    """Selector that may not use global() (only an EntityRule namespaceSelector may)."""
    canon = _selector(value)
    if uses_global(canon):
        raise ValueError("global() can only be used in a rule's namespaceSelector")
    return canon


def check_namespace_selector(value: Any) -> str:
    """Rule namespaceSelector: a selector, or global() on its own."""
    canon = _selector(value)
    if uses_global(canon) and canon != "global()":
        raise ValueError("global() cannot be combined with other selector terms")
    return canon


def _optional(check: Callable[[Any], str]) -> PlainValidator:
    # An empty optional selector means "no constraint", which is not the same as all() (that
    # matches only Calico endpoints), so "" is stored as unset rather than canonicalised.
    def inner(value: Any) -> str | None:
        return None if value == "" else check(value)

    return PlainValidator(inner)


Selector = Annotated[str, PlainValidator(check_selector)]
NamespaceSelector = Annotated[str, PlainValidator(check_namespace_selector)]
OptionalSelector = Annotated[str | None, _optional(check_selector)]
OptionalNamespaceSelector = Annotated[str | None, _optional(check_namespace_selector)]

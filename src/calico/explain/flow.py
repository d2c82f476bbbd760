"""A flow to explain: its two ends and its packet headers.

Enters: what a user typed (`NS/NAME` for a workload endpoint, `hep:NAME` for a host endpoint, an IP address;
`hep:NAME` alone for the host endpoints a forwarded flow arrives and leaves through;
a protocol name or number, ports, ICMP type and code). Leaves: `Party` and `Flow` values, or ValueError with a
message naming the option that is wrong. Pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from calico.dataplane.protocols import PORT_PROTOCOL_NAMES, name_of, number

ICMP_NUMBERS = {4: 1, 6: 58}


class PartyKind(Enum):
    WORKLOAD = "workload"
    HOST = "host"
    ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class Party:
    kind: PartyKind
    name: str  # "NS/NAME", the host endpoint's name, or the address
    namespace: str | None = None
    endpoint: str | None = None


def parse_party(text: str, option: str) -> Party:
    text = text.strip()
    if text.startswith("hep:"):
        name = text[4:]
        if not name:
            raise ValueError(f"{option}: hep: needs a host endpoint name")
        return Party(PartyKind.HOST, name, endpoint=name)
    try:
        return Party(PartyKind.ADDRESS, str(ipaddress.ip_address(text)))
    except ValueError:
        pass
    ns, sep, name = text.partition("/")
    if not sep or not ns or not name or "/" in name:
        raise ValueError(f"{option}: {text!r} is neither NAMESPACE/NAME, hep:NAME nor an IP address")
    return Party(PartyKind.WORKLOAD, text, namespace=ns, endpoint=name)


def parse_host_endpoint(text: str | None, option: str) -> Party | None:
    """`hep:NAME` (for --via / --leaves-via); None when the option was not given."""
    if text is None:
        return None
    party = parse_party(text, option)
    if party.kind is not PartyKind.HOST:
        raise ValueError(f"{option}: {text!r} is not hep:NAME (a host endpoint)")
    return party


@dataclass(frozen=True, slots=True)
class Flow:
    """One packet's headers (the first of a connection). Addresses are filled in from the endpoints."""

    src_ip: str
    dst_ip: str
    protocol: int
    src_port: int | None = None
    dst_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.src_ip).version

    @property
    def is_icmp(self) -> bool:
        return self.protocol == ICMP_NUMBERS[self.version]

    @property
    def port_protocol(self) -> str | None:
        """"tcp", "udp", "sctp" when the protocol carries ports, else None."""
        name = name_of(self.protocol)
        return name if name in PORT_PROTOCOL_NAMES else None

    def describe(self) -> str:
        proto = name_of(self.protocol)
        if self.port_protocol:
            sport = "*" if self.src_port is None else str(self.src_port)
            dport = "*" if self.dst_port is None else str(self.dst_port)
            return f"{proto} {self.src_ip}:{sport} -> {self.dst_ip}:{dport}"
        if self.is_icmp and self.icmp_type is not None:
            code = "" if self.icmp_code is None else f" code {self.icmp_code}"
            return f"{proto} {self.src_ip} -> {self.dst_ip} type {self.icmp_type}{code}"
        return f"{proto} {self.src_ip} -> {self.dst_ip}"


@dataclass(frozen=True, slots=True)
class Headers:
    """What the user gave besides the two ends."""

    protocol: int
    src_port: int | None = None
    dst_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


def parse_headers(protocol: str, port: int | None, src_port: int | None, icmp_type: int | None,
                  icmp_code: int | None) -> Headers:
    try:
        proto = number(protocol)
    except ValueError as e:
        raise ValueError(f"--protocol: {e}") from None
    carries_ports = name_of(proto) in PORT_PROTOCOL_NAMES
    for opt, value in (("--port", port), ("--src-port", src_port)):
        if value is not None:
            if not carries_ports:
                raise ValueError(f"{opt}: protocol {protocol} has no ports")
            if not 0 <= value <= 65535:
                raise ValueError(f"{opt}: {value} is not 0-65535")
    if port is None and carries_ports:
        raise ValueError(f"--port: a {name_of(proto)} flow needs a destination port")
    for opt, value in (("--icmp-type", icmp_type), ("--icmp-code", icmp_code)):
        if value is not None:
            if proto not in ICMP_NUMBERS.values():
                raise ValueError(f"{opt}: only for ICMP or ICMPv6 flows")
            if not 0 <= value <= 255:
                raise ValueError(f"{opt}: {value} is not 0-255")
    if icmp_code is not None and icmp_type is None:
        raise ValueError("--icmp-code: needs --icmp-type")
    return Headers(proto, src_port, port, icmp_type, icmp_code)

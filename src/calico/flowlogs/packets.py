"""A flow's key from the headers of a logged packet: protocol, addresses and ports.

In: the address family and the start of a packet at its network header (what NFLOG copies). Out: `FlowKey`
and the packet's full length (from its IP header: the copy may be cut short), or None for what is not IPv4 or
IPv6 or too short to tell. Ports are 0 for protocols without them (ICMP among them) and for non-first
fragments. Pure.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple

PORT_PROTOCOLS = frozenset({6, 17, 132, 136})  # TCP, UDP, SCTP, UDP-Lite
_IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options: (len + 1) * 8 bytes
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}


class FlowKey(NamedTuple):
    proto: int
    src: str
    dst: str
    sport: int
    dport: int

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))


def _ports(data: bytes, at: int, proto: int) -> tuple[int, int]:
    if proto in PORT_PROTOCOLS and len(data) >= at + 4:
        return int.from_bytes(data[at:at + 2], "big"), int.from_bytes(data[at + 2:at + 4], "big")
    return 0, 0


def parse_packet(family: int, data: bytes) -> tuple[FlowKey, int] | None:
    if family == socket.AF_INET and len(data) >= 20 and data[0] >> 4 == 4:
        ihl = (data[0] & 0x0F) * 4
        length = int.from_bytes(data[2:4], "big")
        proto = data[9]
        src, dst = str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20]))
        first_fragment = int.from_bytes(data[6:8], "big") & 0x1FFF == 0
        sport, dport = _ports(data, ihl, proto) if first_fragment else (0, 0)
        return FlowKey(proto, src, dst, sport, dport), length
    if family == socket.AF_INET6 and len(data) >= 40 and data[0] >> 4 == 6:
        length = int.from_bytes(data[4:6], "big") + 40
        src, dst = str(ipaddress.IPv6Address(data[8:24])), str(ipaddress.IPv6Address(data[24:40]))
        proto, at = data[6], 40
        while len(data) >= at + 8:
            if proto in _IPV6_EXTENSIONS:
                proto, at = data[at], at + (data[at + 1] + 1) * 8
            elif proto == 44:  # fragment: only the first one carries the ports
                if int.from_bytes(data[at + 2:at + 4], "big") >> 3:
                    return FlowKey(data[at], src, dst, 0, 0), length
                proto, at = data[at], at + 8
            elif proto == 51:  # authentication header
                proto, at = data[at], at + (data[at + 1] + 2) * 4
            else:
                break
        return FlowKey(proto, src, dst, *_ports(data, at, proto)), length
    return None

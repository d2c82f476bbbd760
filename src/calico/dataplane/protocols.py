"""IP protocols as both firewall backends name them: the one protocol table of the dataplane.

In: a protocol as the calculation graph passes it on (Calico's spelling from `calico.resources.fields`, e.g.
"TCP" or "ICMPv6", any case, or a number 1-255). Out: its number, the spelling nft and iptables both accept
(/etc/protocols: "tcp", "ipv6-icmp", ...), the IP version it implies, and which protocols carry ports.
Pure. Calico's names, the protocols that carry ports and the ICMP family table live in `resources.fields`;
this module adds only what the kernel needs on top of them: the numbers and the kernel spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from calico.resources.fields import ICMP_PROTOCOLS, PORT_PROTOCOLS, PROTOCOL_NAMES

# IANA numbers of the protocols Calico names (keys: Calico's spelling, the values of PROTOCOL_NAMES).
PROTOCOL_NUMBERS: Mapping[str, int] = MappingProxyType(
    {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}
)
_NAMES_BY_NUMBER = {n: name for name, n in PROTOCOL_NUMBERS.items()}
# Where /etc/protocols (what nft and iptables parse) differs from Calico's name lower-cased.
_KERNEL_SPELLING = {"ICMPv6": "ipv6-icmp"}


def canonical(protocol: str | int) -> str | int:
    """Calico's spelling for a known name (any case), an int for a number; ValueError for anything else."""
    if isinstance(protocol, bool):
        raise ValueError(f"unknown protocol {protocol!r}")
    if isinstance(protocol, int) or (isinstance(protocol, str) and protocol.isascii() and protocol.isdigit()):
        value = int(protocol)
        if not 0 <= value <= 255:
            raise ValueError(f"protocol number {value} is not 0-255")
        return value
    name = PROTOCOL_NAMES.get(str(protocol).lower())
    if name is None:
        raise ValueError(f"unknown protocol {protocol!r}")
    return name


def number(protocol: str | int) -> int:
    p = canonical(protocol)
    return p if isinstance(p, int) else PROTOCOL_NUMBERS[p]


def kernel_name(protocol: str | int) -> str:
    """How a rule names it to nft and iptables: the /etc/protocols name, or the number as given."""
    p = canonical(protocol)
    if isinstance(p, int):
        return str(p)
    return _KERNEL_SPELLING.get(p, p.lower())


def implied_version(protocol: str | int) -> int | None:
    """4 for ICMP, 6 for ICMPv6 (by name or number), else None."""
    p = canonical(protocol)
    return ICMP_PROTOCOLS.get(_NAMES_BY_NUMBER.get(p, p) if isinstance(p, int) else p)


# Kernel names of the protocols that carry ports, in protocol-number order: tcp, udp, sctp.
PORT_PROTOCOL_NAMES: tuple[str, ...] = tuple(
    kernel_name(_NAMES_BY_NUMBER[n]) for n in sorted(p for p in PORT_PROTOCOLS if isinstance(p, int))
)


def port_protocol(text: str) -> str | None:
    """The kernel name of a port protocol written any case ("TCP", "udp"), or None when it carries no ports."""
    name = text.strip().lower()
    return name if name in PORT_PROTOCOL_NAMES else None


def name_of(protocol_number: int) -> str:
    """The kernel name of a protocol number Calico names ("tcp" for 6), else the number as text."""
    name = _NAMES_BY_NUMBER.get(protocol_number)
    return kernel_name(name) if name is not None else str(protocol_number)

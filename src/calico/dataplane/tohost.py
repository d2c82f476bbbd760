"""A workload's traffic to its own host: what both renderers accept before the workload's egress policy, and
what DefaultEndpointToHostAction does after it. Pure; the renderers spell it, explain reads it.

Enters: a packet's protocol, destination port, IP version and ICMPv6 type, or the configured action. Leaves: why
it is accepted first (or None), and the action as a kernel verdict.
"""

from __future__ import annotations

DHCP_PORTS = {4: (67, 68), 6: (546, 547)}  # DHCP / DHCPv6, udp
DNS_PORT = 53  # tcp and udp
ND_TYPES = (133, 134, 135, 136)  # ICMPv6 router solicit / advert, neighbour solicit / advert


def accepted_first(protocol: str | None, dst_port: int | None, version: int, icmp_type: int | None) -> str | None:
    """Why the wl-to-host stage accepts this packet before any policy, or None."""
    if protocol == "udp" and dst_port in DHCP_PORTS[version]:
        return "DHCP" if version == 4 else "DHCPv6"
    if protocol in ("tcp", "udp") and dst_port == DNS_PORT:
        return "DNS"
    if protocol == "icmpv6" and icmp_type in ND_TYPES:
        return "IPv6 neighbour discovery"
    return None


def action(endpoint_to_host: str) -> str:
    """DefaultEndpointToHostAction as a verdict: "drop" (Calico's default), "accept", or "return" (the host
    endpoints' ingress policy decides)."""
    return {"accept": "accept", "return": "return"}.get(endpoint_to_host.lower(), "drop")

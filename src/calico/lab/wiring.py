"""Wiring, as Calico's CNI plugin does it for a workload and as a data centre does it for a host.

Workload (brief, "Workload wiring"): a veth whose host side is `cali` + 11 hex chars of a hash of the
workload's identity, MAC ee:ee:ee:ee:ee:ee, proxy_arp=1, proxy_delay=0, forwarding on; the workload side is
`eth0` holding the workload's /32 and /128, a link route to 169.254.1.1 and a default route via it, and an IPv6
default route via the host side's link-local address. The host's /32 and /128 routes to the interface are
Felix's job (it adds them only while the interface is up), not the wiring's.

Host: a namespace joined to the fabric bridge by a veth (`eth0` in the host), with a fabric address and a
default route into the fabric, so proxy ARP for 169.254.1.1 has somewhere to send what it answers for.
"""

from __future__ import annotations

import hashlib

from calico.lab import netns
from calico.lab.netns import ip, sysctl

CALI_MAC = "ee:ee:ee:ee:ee:ee"
HOST_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"  # EUI-64 of ee:ee:ee:ee:ee:ee
FABRIC_BRIDGE = "br0"


def iface_name(prefix: str, identity: str) -> str:
    """`cali` + 11 hex chars of a hash: stable for one workload, within Linux's 15-character limit."""
    return prefix + hashlib.sha1(identity.encode()).hexdigest()[: 15 - len(prefix)]


def make_fabric(fabric_ns: str, gw4: str, gw6: str) -> None:
    netns.add(fabric_ns)
    ip(fabric_ns, "link", "add", FABRIC_BRIDGE, "type", "bridge")
    ip(fabric_ns, "link", "set", FABRIC_BRIDGE, "up")
    ip(fabric_ns, "addr", "add", gw4, "dev", FABRIC_BRIDGE)
    ip(fabric_ns, "-6", "addr", "add", gw6, "dev", FABRIC_BRIDGE, "nodad")


def make_host(host_ns: str, fabric_ns: str, port: str, addr4: str, addr6: str, gw4: str, gw6: str) -> None:
    """A host namespace on the fabric: `eth0` inside, `port` on the fabric bridge."""
    netns.add(host_ns)
    sysctl(
        host_ns,
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    )
    # Created inside the fabric namespace, the peer moved straight into the host namespace.
    ip(fabric_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host_ns)
    ip(fabric_ns, "link", "set", port, "master", FABRIC_BRIDGE)
    ip(fabric_ns, "link", "set", port, "up")
    ip(host_ns, "link", "set", "eth0", "up")
    ip(host_ns, "addr", "add", addr4, "dev", "eth0")
    ip(host_ns, "-6", "addr", "add", addr6, "dev", "eth0", "nodad")
    ip(host_ns, "route", "add", "default", "via", gw4.split("/")[0])
    ip(host_ns, "-6", "route", "add", "default", "via", gw6.split("/")[0])


def wire_workload(
    host_ns: str, wl_ns: str, iface: str, ipv4: str | None, ipv6: str | None, host_sysctls: bool = True
) -> None:
    """`host_sysctls=False` leaves the host side's per-interface sysctls to Felix (tests of its route manager)."""
    netns.add(wl_ns)
    netns.sysctl(wl_ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    # Created inside the host namespace; the peer goes straight into the workload namespace.
    ip(host_ns, "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns", wl_ns)
    ip(host_ns, "link", "set", iface, "address", CALI_MAC)
    if host_sysctls:
        sysctl(
            host_ns,
            f"net.ipv4.conf.{iface}.proxy_arp=1",
            f"net.ipv4.neigh.{iface}.proxy_delay=0",
            f"net.ipv4.conf.{iface}.forwarding=1",
            f"net.ipv6.conf.{iface}.forwarding=1",
        )
    ip(host_ns, "link", "set", iface, "up")
    ip(wl_ns, "link", "set", "eth0", "up")
    if ipv4:
        ip(wl_ns, "addr", "add", f"{ipv4}/32", "dev", "eth0")
        ip(wl_ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
        ip(wl_ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    if ipv6:
        ip(wl_ns, "-6", "addr", "add", f"{ipv6}/128", "dev", "eth0", "nodad")
        ip(wl_ns, "-6", "route", "add", "default", "via", HOST_LINK_LOCAL, "dev", "eth0")


def unwire_workload(wl_ns: str) -> None:
    """Deleting the namespace deletes its end of the veth, and with it the host side."""
    netns.delete(wl_ns)

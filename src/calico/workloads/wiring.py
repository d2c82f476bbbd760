"""A workload's veth, wired as Calico's CNI plugin wires it (brief, "Workload wiring").

Host side: `cali` + 11 hex chars of a hash of the workload's identity (OpenStack: `tap` + port id), MAC
ee:ee:ee:ee:ee:ee, proxy_arp=1, proxy_delay=0, forwarding on. Workload side: `eth0` holding the workload's /32
and /128, a link route to 169.254.1.1 and a default route via it, and an IPv6 default route via the host side's
link-local address. The host's /32 and /128 routes to the interface are Felix's job (it adds them while the
interface is up), not the wiring's. Both ends get the MTU the network needs (host MTU minus encapsulation).
"""

from __future__ import annotations

import hashlib

from calico.workloads import ip as iputil

CALI_MAC = "ee:ee:ee:ee:ee:ee"
HOST_LINK_LOCAL = "fe80::ecee:eeff:feee:eeee"  # EUI-64 of ee:ee:ee:ee:ee:ee
GATEWAY4 = "169.254.1.1"


def iface_name(prefix: str, identity: str) -> str:
    """`cali` + 11 hex chars of a hash: stable for one workload, within Linux's 15-character limit."""
    return prefix + hashlib.sha1(identity.encode()).hexdigest()[: 15 - len(prefix)]


def wire_workload(
    host_ns: str, wl_ns: str, iface: str, ipv4: str | None, ipv6: str | None, host_sysctls: bool = True,
    mtu: int | None = None,
) -> None:
    """Create `wl_ns` and the veth into it. `host_sysctls=False` leaves the host side's per-interface sysctls to
    Felix (tests of its route manager)."""
    iputil.add(wl_ns)
    iputil.sysctl(wl_ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    mtu_args = f" mtu {mtu}" if mtu else ""
    # Created inside the host namespace; the peer goes straight into the workload namespace.
    iputil.ip_batch(host_ns, [
        f"link add {iface}{mtu_args} type veth peer name eth0{mtu_args} netns {wl_ns}",
        f"link set {iface} address {CALI_MAC}",
    ])
    if host_sysctls:
        iputil.sysctl(
            host_ns,
            f"net.ipv4.conf.{iface}.proxy_arp=1",
            f"net.ipv4.neigh.{iface}.proxy_delay=0",
            f"net.ipv4.conf.{iface}.forwarding=1",
            f"net.ipv6.conf.{iface}.forwarding=1",
        )
    iputil.ip(host_ns, "link", "set", iface, "up")
    inside = ["link set eth0 up"]
    if ipv4:
        inside += [f"addr add {ipv4}/32 dev eth0", f"route add {GATEWAY4} dev eth0 scope link",
                   f"route add default via {GATEWAY4} dev eth0"]
    if ipv6:
        inside += [f"addr add {ipv6}/128 dev eth0 nodad", f"route add default via {HOST_LINK_LOCAL} dev eth0"]
    iputil.ip_batch(wl_ns, inside)


def unwire_workload(wl_ns: str) -> None:
    """Deleting the namespace deletes its end of the veth, and with it the host side."""
    iputil.delete(wl_ns)

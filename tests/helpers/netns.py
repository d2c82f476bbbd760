"""A small world of network namespaces wired the way Calico's CNI plugin wires workloads.

In: a run id (short hex, unique per run). Out: a `World` with one "host" namespace (`cnt-<run>-host`) and
workload namespaces (`cnt-<run>-<name>`), each joined to the host by a veth pair whose host side is
`cali` + 11 hex chars (MAC ee:ee:ee:ee:ee:ee, proxy_arp, proxy_delay 0) and whose workload side is `eth0`
with a /32 and a /128, a link route to 169.254.1.1 and default routes via it / via the host side's
link-local address. The host has /32 and /128 routes to each cali interface, forwarding on, its own
addresses on `lo`, and an "uplink" veth pair (both ends inside the host namespace) as its default route, so
proxy ARP for 169.254.1.1 has a route out of another interface to answer for. `add_external()` gives the
host a second uplink whose peer namespace acts as an external client (for host endpoint tests).

Safety: every command targets a namespace this world created (`ip -n NS`, `ip netns exec NS`); the veth
pair is created inside the host namespace with its peer placed straight into the workload namespace.
`probe()` starts a bounded listener and sender (killed by PID) or a single `ping -c1`. `close()` deletes
every namespace the world made (also registered with atexit as a backstop).
"""

from __future__ import annotations

import atexit
import hashlib
import ipaddress
import subprocess
import time
from dataclasses import dataclass, field

from calico.lab.probe import probe as lab_probe
from calico.workloads import wiring
from calico.workloads.wiring import CALI_MAC, HOST_LINK_LOCAL  # noqa: F401 - re-exported for tests


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Workload:
    name: str
    netns: str
    iface: str  # host side, in the host namespace
    ipv4: str
    ipv6: str


@dataclass(frozen=True)
class External:
    """A client outside the host: its own namespace, joined to the host by a second "uplink" veth."""

    netns: str
    host_iface: str  # the host's side, in the host namespace (a host endpoint's interfaceName)
    host_ip: str  # the host's address on that link
    ipv4: str  # the client's address


@dataclass
class World:
    run_id: str
    host_ipv4: str = "198.18.0.1"
    host_ipv6: str = "fd00:c411:0:ff::1"
    workloads: dict[str, Workload] = field(default_factory=dict)
    externals: dict[str, External] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.host = f"cnt-{self.run_id}-host"
        atexit.register(self.close)
        self._add_ns(self.host)
        try:
            self._sysctl(
                self.host,
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.all.accept_dad=0",
            )
            up_a, up_b = f"u{self.run_id}a", f"u{self.run_id}b"
            sh("ip", "-n", self.host, "link", "add", up_a, "type", "veth", "peer", "name", up_b)
            for link in ("lo", up_a, up_b):
                sh("ip", "-n", self.host, "link", "set", link, "up")
            sh("ip", "-n", self.host, "addr", "add", f"{self.host_ipv4}/32", "dev", "lo")
            sh("ip", "-n", self.host, "-6", "addr", "add", f"{self.host_ipv6}/128", "dev", "lo")
            sh("ip", "-n", self.host, "route", "add", "default", "dev", up_a)
            sh("ip", "-n", self.host, "-6", "route", "add", "default", "dev", up_a)
        except BaseException:
            self.close()
            raise

    # --- building ----------------------------------------------------------------------------------

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self._namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    @staticmethod
    def _sysctl(ns: str, *settings: str) -> None:
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings)

    def iface_for(self, name: str) -> str:
        return "cali" + hashlib.sha1(f"{self.run_id}/{name}".encode()).hexdigest()[:11]

    def add_workload(
        self, name: str, ipv4: str, ipv6: str, host_routes: bool = True, host_sysctls: bool = True
    ) -> Workload:
        """Wire a workload. host_routes / host_sysctls False leave the host side's routes and per-interface
        sysctls to the code under test (the route manager)."""
        ns = f"cnt-{self.run_id}-{name}"
        iface = self.iface_for(name)
        self._namespaces.append(ns)  # recorded first: close() removes it even if wiring fails half-way
        wiring.wire_workload(self.host, ns, iface, ipv4, ipv6, host_sysctls=host_sysctls)
        if host_routes:
            sh("ip", "-n", self.host, "route", "add", f"{ipv4}/32", "dev", iface)
            sh("ip", "-n", self.host, "-6", "route", "add", f"{ipv6}/128", "dev", iface)
        wl = Workload(name, ns, iface, ipv4, ipv6)
        self.workloads[name] = wl
        return wl

    def add_extra_address(self, wl: Workload, addr: str, host_route: bool = True) -> None:
        """A second address inside the workload (for spoofing tests), optionally routed back by the host."""
        fam = ["-6"] if ipaddress.ip_address(addr).version == 6 else []
        plen = 128 if fam else 32
        extra = ["nodad"] if fam else []
        sh("ip", "-n", wl.netns, *fam, "addr", "add", f"{addr}/{plen}", "dev", "eth0", *extra)
        if host_route:
            sh("ip", "-n", self.host, *fam, "route", "add", f"{addr}/{plen}", "dev", wl.iface)

    def add_external(
        self, name: str = "ext", host_ip: str = "198.18.200.1", ipv4: str = "198.18.200.2", plen: int = 24
    ) -> External:
        """A second host uplink `x<run><n>` with `host_ip`, whose peer namespace `cnt-<run>-<name>` holds
        `ipv4` and a default route via the host (so it can reach the host and, forwarded, its workloads)."""
        ns = f"cnt-{self.run_id}-{name}"
        iface = f"x{self.run_id}{len(self.externals)}"
        self._add_ns(ns)
        sh("ip", "-n", self.host, "link", "add", iface, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.host, "addr", "add", f"{host_ip}/{plen}", "dev", iface)
        sh("ip", "-n", self.host, "link", "set", iface, "up")
        sh("ip", "-n", ns, "addr", "add", f"{ipv4}/{plen}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", host_ip, "dev", "eth0")
        ext = External(ns, iface, host_ip, ipv4)
        self.externals[name] = ext
        return ext

    # --- traffic -----------------------------------------------------------------------------------

    def _ns_of(self, ip: str) -> str:
        for wl in self.workloads.values():
            if ip in (wl.ipv4, wl.ipv6):
                return wl.netns
        if ip in (self.host_ipv4, self.host_ipv6):
            return self.host
        for ext in self.externals.values():
            if ip == ext.host_ip:
                return self.host
            if ip == ext.ipv4:
                return ext.netns
        raise KeyError(f"no namespace in this world owns {ip}")

    def probe(
        self,
        src: Workload | str,
        dst_ip: str,
        proto: str = "tcp",
        port: int = 8080,
        timeout: float = 1.0,
        src_ip: str | None = None,
    ) -> bool:
        """True when a tcp/udp round trip (or one ping) from `src` to `dst_ip` succeeds within `timeout`."""
        src_ns = src.netns if isinstance(src, Workload) else src
        dst_ns = src_ns if proto == "icmp" else self._ns_of(dst_ip)
        result = lab_probe(src_ns, dst_ns, dst_ip, proto, port, timeout, src_ip or "")
        if result.error:  # a probe that could not run must not read as "blocked"
            raise RuntimeError(result.error)
        return result.ok

    # --- teardown ----------------------------------------------------------------------------------

    def close(self) -> None:
        for ns in reversed(self._namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self._namespaces.clear()
        atexit.unregister(self.close)
        time.sleep(0)  # keep close() cheap and idempotent


def new_run_id() -> str:
    import secrets

    return secrets.token_hex(3)

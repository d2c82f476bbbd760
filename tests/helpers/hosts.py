"""Several hosts on a fabric, each a network namespace, for tests of the network between hosts.

In: a run id. Out: a `Fabric`: a fabric namespace (`cnh-<run>-fab`) whose bridge routes between subnets
(subnet s: `198.19.<s>.0/24` and `fd00:ff:<s hex>::/64`, gateway `.254` / `::fe` on bridge `br<s>`), host
namespaces (`cnh-<run>-<host>`, `eth0` = `198.19.<s>.<i>` / `fd00:ff:<s hex>::<i hex>`, default routes via the
gateway) built with `calico.lab.topology` (the lab's own router and hosts), workloads wired as Calico's CNI plugin
does (`calico.workloads.wiring`), and an "outside" namespace on its own subnet that is in no pool. Nothing of
the host side of a workload is routed here: that is Felix's (the driver under test).

`Drivers` runs, per host, the dataplane driver Felix builds (`calico.dataplane.factory.create_driver`: firewall,
workload routes, network manager) inside that host's namespace; `stop()` leaves the kernel state in place.

`source_seen()` asks a one-shot UDP responder in a destination namespace which source address a datagram
arrived with (a NAT shows there); `connect_seen()` does the same over a TCP round trip (optionally to another
address than the server's: a floating IP, the metadata address). `counters()` reads an interface's packet counters. `close()` deletes every
namespace (also registered with atexit); every process started here is bounded in time and reaped.
"""

from __future__ import annotations

import atexit
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass, field

from calico.dataplane.config import DataplaneConfig
from calico.dataplane.driver import KernelDriver
from calico.dataplane.factory import create_driver
from calico.dataplane.network import NetworkManager
from calico.lab import plan, topology
from calico.workloads import wiring

_RESPONDER = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    data, peer = s.recvfrom(64)
    print(peer[0], flush=True)
    s.sendto(peer[0].encode(), peer)
except socket.timeout:
    pass
"""

_ASKER = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", int(sys.argv[4])))
s.settimeout(float(sys.argv[3]))
s.sendto(b"who", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(64)[0].decode())
"""


_SOURCE_PORTS = itertools.cycle(range(40000, 60000))

_TCP_SERVER = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
try:
    conn, peer = s.accept()
    conn.sendall(peer[0].encode())
    conn.close()
except socket.timeout:
    pass
"""

_TCP_CLIENT = """
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
print(s.recv(64).decode())
"""


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Host:
    name: str
    netns: str
    ipv4: str
    ipv6: str
    subnet: int


@dataclass(frozen=True)
class Workload:
    name: str
    host: Host
    netns: str
    iface: str
    ipv4: str
    ipv6: str | None


@dataclass
class Fabric:
    run_id: str
    hosts: dict[str, Host] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _subnets: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.netns = self._ns("fab")
        atexit.register(self.close)
        try:
            # The lab's router: forwarding on, no duplicate address detection (a tentative link-local address
            # would hold IPv6 through the fabric up for ~2 s); a bridge per subnet, added as hosts need them.
            topology.make_router(self.netns, 0)
            self._subnet(1)
        except BaseException:
            self.close()
            raise

    def _ns(self, name: str) -> str:
        ns = f"cnh-{self.run_id}-{name}"
        self._namespaces.append(ns)  # recorded first: close() removes it even if building it fails half-way
        return ns

    def _subnet(self, s: int) -> None:
        if s not in self._subnets:
            topology.add_subnet(self.netns, s)
            self._subnets.add(s)

    def add_host(self, name: str, subnet: int, index: int) -> Host:
        self._subnet(subnet)
        hp = plan.HostPlan(name, index, subnet)
        host = Host(name, self._ns(name), hp.addr4.split("/")[0], hp.addr6.split("/")[0], subnet)
        topology.make_host(host.netns, self.netns, f"p{self.run_id}{len(self.hosts)}", hp)
        self.hosts[name] = host
        return host

    def add_outside(self, subnet: int = 100) -> Host:
        """A namespace in no pool, as the lab's outside server: `198.19.<subnet>.1`."""
        return self.add_host("out", subnet, 1)

    def add_workload(self, host: Host, name: str, ipv4: str, ipv6: str | None = None) -> Workload:
        ns = self._ns(name)
        iface = wiring.iface_name("cali", f"{self.run_id}/{name}")
        wiring.wire_workload(host.netns, ns, iface, ipv4, ipv6)
        wl = Workload(name, host, ns, iface, ipv4, ipv6)
        self.workloads[name] = wl
        return wl

    # --- looking at it -----------------------------------------------------------------------------------

    def ping(self, src_ns: str, dst: str, count: int = 1) -> bool:
        fam = "-6" if ":" in dst else "-4"
        proc = subprocess.run(["ip", "netns", "exec", src_ns, "ping", fam, "-c", str(count), "-i", "0.2", "-W", "1",
                               dst], capture_output=True, timeout=10 + count, check=False)
        return proc.returncode == 0

    def source_seen(self, src_ns: str, dst_ns: str, dst_ip: str, port: int = 9000, timeout: float = 1.0) -> str | None:
        """The source address a UDP datagram from `src_ns` to `dst_ip` arrived with in `dst_ns`, or None when
        it did not arrive. (Whether the reply made it back does not matter: an outside host cannot answer a
        pool address that was not NATed.)"""
        # A fresh source port each time: a conntrack entry left by an earlier probe (NAT decided then) is never
        # reused by a later one, whatever port the kernel would have picked.
        sport = str(next(_SOURCE_PORTS))
        seen, _ = self._one_shot(_RESPONDER, dst_ns, dst_ip, port, _ASKER, src_ns, dst_ip, port, timeout, sport)
        return seen.strip() or None

    def connect_seen(self, src_ns: str, dst_ns: str, dst_ip: str, port: int = 9001, via: str | None = None,
                     via_port: int | None = None, timeout: float = 1.0) -> str | None:
        """The source address a TCP connection from `src_ns` to `via`:`via_port` (default `dst_ip`:`port`) arrived
        with at a server bound to `dst_ip`:`port` in `dst_ns`, as the client hears it back; None when the
        connection failed. A round trip: the replies found their way back through whatever NAT the packets went
        through."""
        _, client = self._one_shot(_TCP_SERVER, dst_ns, dst_ip, port, _TCP_CLIENT, src_ns, via or dst_ip,
                                   via_port or port, timeout)
        if client.returncode != 0:
            return None
        return client.stdout.strip() or None

    def _one_shot(self, server_script: str, dst_ns: str, dst_ip: str, port: int, client_script: str, src_ns: str,
                  to: str, to_port: int, timeout: float, *extra: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        """A one-shot server (it prints "ready" once bound to `dst_ip`:`port` in `dst_ns`), then a client in
        `src_ns` towards `to`:`to_port`. Returns what the server printed after "ready", and the client's run."""
        server = subprocess.Popen(["ip", "netns", "exec", dst_ns, sys.executable, "-c", server_script, dst_ip,
                                   str(port), str(timeout + 2)], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(f"server on {dst_ip}:{port} in {dst_ns} did not start")
            client = subprocess.run(["ip", "netns", "exec", src_ns, sys.executable, "-c", client_script, to,
                                     str(to_port), str(timeout), *extra], capture_output=True, text=True,
                                    timeout=timeout + 10, check=False)
        finally:
            server.kill()
            seen, _ = server.communicate(timeout=5)
        return seen, client

    def counters(self, ns: str, iface: str) -> tuple[int, int]:
        """(packets sent, packets received) on `iface` in `ns`."""
        [link] = json.loads(sh("ip", "-n", ns, "-j", "-s", "link", "show", "dev", iface))
        stats = link["stats64"]
        return stats["tx"]["packets"], stats["rx"]["packets"]

    def close(self) -> None:
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._namespaces.clear()
        atexit.unregister(self.close)


class Drivers:
    """One production driver per host, each in its host's namespace (see the module docstring)."""

    def __init__(self) -> None:
        self.by_host: dict[str, KernelDriver] = {}

    async def start(self, host: Host, **cfg: object) -> KernelDriver:
        cfg.setdefault("route_refresh_interval", 3600)  # tests refresh when they mean to
        config = DataplaneConfig(hostname=host.name, **cfg)  # type: ignore[arg-type]
        driver = create_driver(config, host.netns)
        await driver.start()
        self.by_host[host.name] = driver
        return driver

    def network(self, host: Host) -> NetworkManager:
        net = self.by_host[host.name].network
        assert isinstance(net, NetworkManager)
        return net

    async def stop(self) -> None:
        for driver in self.by_host.values():
            await driver.stop()
        self.by_host.clear()

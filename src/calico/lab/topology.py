"""Building the lab's fabric: a router namespace with one bridge per subnet, an outside network, host namespaces.

Every command is addressed to a namespace this lab created (`calico.workloads.ip`); the root namespace is never
touched. Hosts get their fabric address on `eth0` and a default route to their subnet's router, which forwards
between subnets and to the outside network (it knows nothing of workload addresses: those are Calico's).

Neighbours on the fabric are written, permanent, when a host is made (MACs come from the plan): the kernel's
neighbour table is one for every namespace on the machine (gc_thresh3 = 1,024 entries by default, a root-only
setting), and 32 hosts reaching each other need ~1,000 entries; permanent ones are not counted against it.
"""

from __future__ import annotations

from calico.lab import plan
from calico.workloads import ip as iputil
from calico.workloads.ip import ip_batch, sysctl

FORWARDING = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.accept_dad=0",
              "net.ipv6.conf.default.accept_dad=0")


def make_router(router_ns: str, subnets: int) -> None:
    iputil.add(router_ns)
    sysctl(router_ns, *FORWARDING)
    for s in range(1, subnets + 1):
        add_subnet(router_ns, s)


def add_subnet(router_ns: str, s: int) -> None:
    """Subnet `s`: a bridge on the router holding the subnet's gateway addresses."""
    br = plan.bridge(s)
    ip_batch(router_ns, [f"link add {br} address {plan.fabric_mac(s, 0)} type bridge", f"link set {br} up",
                         f"addr add {plan.router4(s)}/24 dev {br}", f"addr add {plan.router6(s)}/64 dev {br} nodad"])


def make_outside(router_ns: str, outside_ns: str, run_id: str) -> None:
    """The outside world: a namespace behind the router, on a network no pool covers."""
    iputil.add(outside_ns)
    sysctl(outside_ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    s = plan.OUTSIDE_SUBNET
    port = f"o{run_id}"
    ip_batch(router_ns, [
        f"link add {port} type veth peer name eth0 netns {outside_ns}",
        f"link set {port} up", f"addr add {plan.router4(s)}/24 dev {port}",
        f"addr add {plan.router6(s)}/64 dev {port} nodad",
    ])
    ip_batch(outside_ns, [
        "link set eth0 up", f"addr add {plan.OUTSIDE4}/24 dev eth0", f"addr add {plan.OUTSIDE6}/64 dev eth0 nodad",
        f"route add default via {plan.router4(s)}", f"route add default via {plan.router6(s)}",
    ])


def _neighbours(dev: str, ends: list[tuple[str, str, str]]) -> list[str]:
    """Permanent neighbour entries for (IPv4, IPv6, MAC) ends on `dev`."""
    return [f"neigh replace {addr} lladdr {mac} dev {dev} nud permanent"
            for a4, a6, mac in ends for addr in (a4, a6)]


def make_host(host_ns: str, router_ns: str, port: str, host: plan.HostPlan,
              peers: tuple[plan.HostPlan, ...] = ()) -> None:
    """A host namespace on its subnet's bridge: `eth0` inside, `port` on the bridge; permanent neighbours for the
    router and for `peers` of the same subnet (others are learnt as usual)."""
    iputil.add(host_ns)
    sysctl(host_ns, *FORWARDING)
    ip4, ip6 = host.addr4.split("/")[0], host.addr6.split("/")[0]
    br = plan.bridge(host.subnet)
    # Created inside the router namespace, the peer moved straight into the host namespace.
    ip_batch(router_ns, [
        f"link add {port} type veth peer name eth0 address {host.mac} netns {host_ns}",
        f"link set {port} master {br}", f"link set {port} up",
        *_neighbours(br, [(ip4, ip6, host.mac)]),
    ])
    ends = [(plan.router4(host.subnet), plan.router6(host.subnet), plan.fabric_mac(host.subnet, 0))]
    ends += [(p.addr4.split("/")[0], p.addr6.split("/")[0], p.mac) for p in peers
             if p.subnet == host.subnet and p.index != host.index]
    ip_batch(host_ns, [
        "link set eth0 up", f"addr add {host.addr4} dev eth0", f"addr add {host.addr6} dev eth0 nodad",
        f"route add default via {plan.router4(host.subnet)}", f"route add default via {plan.router6(host.subnet)}",
        *_neighbours("eth0", ends),
    ])

"""Rendering dnsmasq's configuration from subnet records and local hosts (pure)."""

from __future__ import annotations

from pathlib import Path

from calico.dhcp.render import DnsmasqConfig, Paths, Settings, argv, render
from calico.dhcp.state import DhcpHost
from calico.resources.dhcp import HostRoute, SubnetRecord

V4 = SubnetRecord("net-1", "198.18.20.0/24", 4, "198.18.20.1", ("198.18.0.53", "fd00:53::1", "198.18.0.54"))
V6 = SubnetRecord("net-1", "fd00:20::/64", 6, "fd00:20::1", ("fd00:53::1",), ipv6_address_mode="dhcpv6-stateful")
VM1 = DhcpHost("h1-openstack-vm1-p1", "fa:16:3e:00:00:01", ("198.18.20.5", "fd00:20::5"))
VM2 = DhcpHost("h1-openstack-vm2-p2", "fa:16:3e:00:00:02", ("198.18.20.6", "198.18.99.9"))
SETTINGS = Settings()


def test_ipv4_subnet_range_router_dns_and_hosts():
    cfg = render({"s4": V4}, [VM2, VM1], SETTINGS)
    assert cfg.addresses == ("198.18.20.1/24",)
    assert cfg.ranges == ("set:subnet-s4,198.18.20.0,static,255.255.255.0,86400s",)
    # Sorted by endpoint; only addresses inside a served subnet; IPv6 has no served subnet here.
    assert cfg.hosts == "fa:16:3e:00:00:01,198.18.20.5\nfa:16:3e:00:00:02,198.18.20.6\n"
    assert cfg.opts == ("tag:subnet-s4,option:router,198.18.20.1\n"
                        "tag:subnet-s4,option:dns-server,198.18.0.53,198.18.0.54\n")  # IPv4 servers only
    assert cfg.problems == ()


def test_host_routes_become_classless_routes_with_the_default_route_and_mtu():
    rec = SubnetRecord("n", "198.18.20.0/24", 4, "198.18.20.1",
                       host_routes=(HostRoute("198.18.60.0/24", "198.18.20.254"),))
    cfg = render({"s4": rec}, [], Settings(mtu=1450))
    routes = "198.18.60.0/24,198.18.20.254,0.0.0.0/0,198.18.20.1"
    assert cfg.opts.splitlines() == [
        "tag:subnet-s4,option:router,198.18.20.1",
        f"tag:subnet-s4,option:classless-static-route,{routes}",
        f"tag:subnet-s4,249,{routes}",
        "tag:subnet-s4,option:mtu,1450",
    ]


def test_an_explicit_default_host_route_is_not_doubled():
    rec = SubnetRecord("n", "198.18.20.0/24", 4, "198.18.20.1",
                       host_routes=(HostRoute("0.0.0.0/0", "198.18.20.253"),))
    [_, classless, _] = render({"s4": rec}, [], SETTINGS).opts.splitlines()
    assert classless == "tag:subnet-s4,option:classless-static-route,0.0.0.0/0,198.18.20.253"


def test_ipv6_modes_choose_the_range_mode_and_fixed_addresses_only_when_stateful():
    slaac = SubnetRecord("n", "fd00:21::/64", 6, "fd00:21::1", ipv6_address_mode="slaac", ipv6_ra_mode="slaac")
    stateless = SubnetRecord("n", "fd00:22::/64", 6, "fd00:22::1", ("fd00:53::1",),
                             ipv6_address_mode="dhcpv6-stateless")
    vm = DhcpHost("vm", "fa:16:3e:00:00:03", ("fd00:20::5", "fd00:21::f816:3eff:fe00:3", "fd00:22::7"))
    cfg = render({"s6": V6, "s6a": slaac, "s6b": stateless}, [vm], SETTINGS)
    assert cfg.ranges == ("set:subnet-s6,fd00:20::,static,off-link,64,86400s",
                          "set:subnet-s6a,fd00:21::,ra-only,off-link,64,86400s",
                          "set:subnet-s6b,fd00:22::,ra-stateless,off-link,64,86400s")
    assert cfg.addresses == ("fd00:20::1/64", "fd00:21::1/64", "fd00:22::1/64")
    assert cfg.hosts == "fa:16:3e:00:00:03,[fd00:20::5]\n"
    assert cfg.opts == "tag:subnet-s6,option6:dns-server,[fd00:53::1]\ntag:subnet-s6b,option6:dns-server,[fd00:53::1]\n"


def test_subnets_that_cannot_be_served_are_reported_and_left_out():
    subnets = {
        "a": SubnetRecord("n", "198.18.30.0/24", 4, None),
        "b": SubnetRecord("n", "198.18.31.0/24", 4, "198.18.32.1"),
        "c": SubnetRecord("n", "fd00:23::/48", 6, "fd00:23::1"),
        "d": SubnetRecord("n", "fd00:24::/80", 6, "fd00:24::1", ipv6_address_mode="slaac"),
        "e": SubnetRecord("n", "198.18.20.0/23", 4, "198.18.20.1"),
        "f": V4,
        "g": SubnetRecord("n", "fd00:25::/80", 6, "fd00:25::1"),  # stateful DHCPv6 on a /80 is fine
    }
    cfg = render(subnets, [], SETTINGS)
    assert [r.split(",")[0] for r in cfg.ranges] == ["set:subnet-e", "set:subnet-g"]
    assert cfg.problems == (
        "subnet a (198.18.30.0/24) is not served: it has no gateway_ip (the agent answers from the gateway address)",
        "subnet b (198.18.31.0/24) is not served: its gateway 198.18.32.1 is outside it",
        "subnet c (fd00:23::/48) is not served: dnsmasq serves IPv6 prefixes of /64 or longer, not /48",
        "subnet d (fd00:24::/80) is not served: SLAAC needs a /64 prefix, not /80",
        "subnet f (198.18.20.0/24) is not served: it overlaps subnet e (198.18.20.0/23)",
    )


def test_restart_key_changes_with_subnets_but_not_with_hosts_or_options():
    one = render({"s4": V4}, [VM1], SETTINGS)
    more_hosts = render({"s4": V4}, [VM1, VM2], SETTINGS)
    other_dns = render({"s4": SubnetRecord("net-1", "198.18.20.0/24", 4, "198.18.20.1", ("198.18.0.9",))}, [], SETTINGS)
    with_v6 = render({"s4": V4, "s6": V6}, [VM1], SETTINGS)
    assert one.restart_key == more_hosts.restart_key == other_dns.restart_key
    assert one.hosts != more_hosts.hosts and one.opts != other_dns.opts
    assert with_v6.restart_key != one.restart_key


def test_command_line():
    cfg = render({"s4": V4, "s6": V6}, [], Settings(mtu=1450, user="dnsmasq", log_dhcp=True))
    paths = Paths(Path("/var/lib/calico/dhcp"))
    out = argv(cfg, paths, Settings(mtu=1450, user="dnsmasq", log_dhcp=True), binary="/usr/sbin/dnsmasq")
    assert out == [
        "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv",
        "--port=0", "--log-facility=-", "--pid-file=/var/lib/calico/dhcp/dnsmasq.pid",
        "--dhcp-leasefile=/var/lib/calico/dhcp/leases", "--dhcp-hostsfile=/var/lib/calico/dhcp/hosts",
        "--dhcp-optsfile=/var/lib/calico/dhcp/opts", "--interface=dhcp.calico", "--interface=tap*",
        "--bridge-interface=dhcp.calico,tap*",
        "--dhcp-range=set:subnet-s4,198.18.20.0,static,255.255.255.0,86400s",
        "--dhcp-range=set:subnet-s6,fd00:20::,static,off-link,64,86400s",
        "--enable-ra", "--quiet-ra", "--ra-param=dhcp.calico,mtu:1450,0", "--user=dnsmasq", "--log-dhcp",
    ]
    v4_only = argv(render({"s4": V4}, [], SETTINGS), paths, SETTINGS)
    assert not any(a.startswith(("--enable-ra", "--ra-param", "--user", "--log-dhcp")) for a in v4_only)


def test_nothing_to_serve():
    assert render({}, [VM1], SETTINGS) == DnsmasqConfig((), (), "", "", ())

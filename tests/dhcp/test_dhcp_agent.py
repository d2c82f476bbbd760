"""calico-dhcp-agent for real: dnsmasq answering a real DHCP client (isc-dhcp-client) in a VM namespace behind a tap
interface, on a compute host namespace where calico-felix (InterfacePrefix tap) enforces policy, against the
embedded store (with Felix's nftables backend) and etcd (with the iptables backend).

The datastore is written as the ML2 driver writes it (`calico.openstack.subnets`, `ports`, `secgroups`): an IPv4
subnet (DNS servers, a host route), a DHCPv6-stateful subnet and a SLAAC subnet. What must hold:
  - the VM gets its fixed IPv4 address with the subnet's mask, the gateway and host routes, the DNS servers and
    the MTU; its DHCPv6 address and DNS server; its SLAAC address and an IPv6 default route from the RA;
  - a second port added later gets its address by SIGHUP: same dnsmasq PID, the first VM's lease kept and
    renewed; the two VMs reach each other through the host (proxy ARP within the /24);
  - a removed endpoint's MAC gets no answer.
Run under `flock /tmp/calico-netns.lock` (namespaces and daemons).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest

from calico.datastore.config import from_env, open_kv
from calico.datastore.keys import dhcp_subnet_prefix
from calico.datastore.kv import KVStore
from calico.datastore.store import ResourceStore
from calico.dhcp.dnsmasq import process_running
from calico.openstack import ports, secgroups, subnets
from calico.resources import parse_resource
from tests.dhcp.world import HOSTNAME, ComputeHost
from tests.felix.util import wait_until
from tests.helpers.netns import new_run_id

pytestmark = pytest.mark.heavy

SUBNETS = [
    {"id": "sub-v4", "network_id": "net-1", "cidr": "198.18.40.0/24", "ip_version": 4, "gateway_ip": "198.18.40.1",
     "enable_dhcp": True, "dns_nameservers": ["198.18.0.53", "198.18.0.54"],
     "host_routes": [{"destination": "198.18.41.0/24", "nexthop": "198.18.40.254"}],
     "ipv6_address_mode": None, "ipv6_ra_mode": None},
    {"id": "sub-v6", "network_id": "net-1", "cidr": "fd00:40::/64", "ip_version": 6, "gateway_ip": "fd00:40::1",
     "enable_dhcp": True, "dns_nameservers": ["fd00:53::53"], "host_routes": [],
     "ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": "dhcpv6-stateful"},
    {"id": "sub-slaac", "network_id": "net-1", "cidr": "fd00:41::/64", "ip_version": 6, "gateway_ip": "fd00:41::1",
     "enable_dhcp": True, "dns_nameservers": [], "host_routes": [],
     "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"},
    {"id": "sub-stateless", "network_id": "net-1", "cidr": "fd00:42::/64", "ip_version": 6,
     "gateway_ip": "fd00:42::1", "enable_dhcp": True, "dns_nameservers": ["fd00:53::54"], "host_routes": [],
     "ipv6_address_mode": "dhcpv6-stateless", "ipv6_ra_mode": "dhcpv6-stateless"},
]
SG = {"id": "sg-1", "security_group_rules": [
    {"id": f"r{i}", "direction": d, "ethertype": e, "protocol": None, "port_range_min": None, "port_range_max": None,
     "remote_ip_prefix": None, "remote_group_id": None}
    for i, (d, e) in enumerate([(d, e) for d in ("ingress", "egress") for e in ("IPv4", "IPv6")])]}


def port(n: int, stateful: bool = True) -> dict:
    """A VM port with an address in every subnet (`stateful` False: none in the DHCPv6-stateful one)."""
    mac = f"fa:16:3e:00:40:{n:02x}"
    return {
        "id": f"{n:08x}-4e5f-6789-abcd-ef0123456789", "device_id": f"vm-{n}", "device_owner": "compute:nova",
        "binding:host_id": HOSTNAME, "network_id": "net-1", "project_id": "p", "mac_address": mac,
        "admin_state_up": True, "port_security_enabled": True, "security_groups": [SG["id"]],
        "allowed_address_pairs": [],
        "fixed_ips": [{"subnet_id": "sub-v4", "ip_address": f"198.18.40.{n}"},
                      *([{"subnet_id": "sub-v6", "ip_address": f"fd00:40::{n:x}"}] if stateful else []),
                      {"subnet_id": "sub-slaac", "ip_address": f"fd00:41::f816:3eff:fe00:40{n:02x}"},
                      {"subnet_id": "sub-stateless", "ip_address": f"fd00:42::f816:3eff:fe00:40{n:02x}"}],
    }


def endpoint(p: dict) -> dict:
    return ports.endpoint(p, ports.PortContext(subnets={s["id"]: s for s in SUBNETS}))


@pytest.fixture(params=[("embedded", "nftables"), ("etcd", "iptables")], ids=["embedded-nft", "etcd-iptables"])
def host(request: pytest.FixtureRequest) -> Iterator[ComputeHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    datastore, backend = request.param
    for tool in ("dnsmasq", "dhclient", "ip", "etcd" if datastore == "etcd" else "ip"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (make setup installs it)")
    world = ComputeHost(new_run_id(), datastore, backend)
    try:
        yield world
    finally:
        if os.environ.get("CDH_SHOW_LOGS"):  # debugging aid
            print("--- agent log ---\n" + world.log("agent"))
        world.close()


async def _write_driver_state(kv: KVStore) -> ResourceStore:
    """What the ML2 driver writes at start and for the subnets, the security group and the first port."""
    store = ResourceStore(kv)
    await store.ensure_default_tier()
    await store.create(parse_resource({
        "apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": "default"},
        "spec": {"interfacePrefix": "tap", "metadataAddr": "127.0.0.1", "metadataPort": 8775}}))
    for s in SUBNETS:
        data = subnets.record(s)
        assert data is not None
        await kv.put(dhcp_subnet_prefix("no-region") + s["id"], json.dumps(data, sort_keys=True).encode())
    await store.create(parse_resource(secgroups.policy(SG)))
    await store.create(parse_resource(endpoint(port(5))))
    return store


async def test_vms_get_their_addresses_by_dhcp_and_ra(host: ComputeHost) -> None:
    kv = await open_kv(from_env(host.client_env))
    try:
        store = await _write_driver_state(kv)
        host.start_felix()
        host.start_agent()
        vm1 = host.add_vm("vm1", port(5)["id"], port(5)["mac_address"])

        # --- IPv4: address, mask, gateway, host route (classless), DNS servers, MTU ------------------------
        host.dhclient(vm1, 4)
        got = host.answer(vm1, ("BOUND",), 30)
        assert got is not None, "no DHCPv4 lease for vm1:\n" + host.log("agent")[-4000:]
        assert got["new_ip_address"] == "198.18.40.5" and got["new_subnet_mask"] == "255.255.255.0"
        assert got["new_routers"] == "198.18.40.1"
        assert got["new_domain_name_servers"] == "198.18.0.53 198.18.0.54"
        assert got["new_interface_mtu"] == "1450"
        assert host.vm_addresses(vm1) == ["198.18.40.5/24"]
        routes = {(r["dst"], r.get("gateway")) for r in host.vm_routes(vm1)}
        assert {("default", "198.18.40.1"), ("198.18.41.0/24", "198.18.40.254")} <= routes
        pid = host.dnsmasq_pid()
        assert pid is not None

        # --- IPv6: DHCPv6 stateful address + DNS (dnsmasq joined DHCPv6's group on this tap, made after it
        # started); SLAAC addresses, MTU and the default route from the RA -------------------------------
        host.dhclient(vm1, 6)
        got6 = host.answer(vm1, ("BOUND6",), 30)
        assert got6 is not None, "no DHCPv6 lease for vm1:\n" + host.log("agent")[-4000:]
        assert got6["new_ip6_address"] == "fd00:40::5" and got6["new_dhcp6_name_servers"] == "fd00:53::53"
        await wait_until(lambda: "fd00:41::f816:3eff:fe00:4005/64" in host.vm_addresses(vm1, 6), timeout=15,
                         what="vm1's SLAAC address")
        await wait_until(lambda: "fd00:42::f816:3eff:fe00:4005/64" in host.vm_addresses(vm1, 6), timeout=15,
                         what="vm1's SLAAC address in the DHCPv6-stateless subnet")
        assert "fd00:40::5/128" in host.vm_addresses(vm1, 6)
        assert host.vm_ipv6_mtu(vm1) == 1450  # the RA's MTU option
        [default6] = [r for r in host.vm_routes(vm1, 6) if r["dst"] == "default"]
        assert default6["gateway"].startswith("fe80::") and default6["protocol"] == "ra"
        # off-link prefixes: no on-link route for either /64 in the VM (everything goes to the host)
        assert not [r for r in host.vm_routes(vm1, 6) if r["dst"] in ("fd00:40::/64", "fd00:41::/64")]

        # --- a second port later: SIGHUP, not a restart; the first lease survives ------------------------
        await store.create(parse_resource(endpoint(port(6, stateful=False))))
        vm2 = host.add_vm("vm2", port(6)["id"], port(6)["mac_address"])
        host.dhclient(vm2, 4)
        got2 = host.answer(vm2, ("BOUND",), 30)
        assert got2 is not None, "no DHCPv4 lease for vm2:\n" + host.log("agent")[-4000:]
        assert got2["new_ip_address"] == "198.18.40.6"
        # A port with no DHCPv6 address: SLAAC in the stateless subnet from the RA on this tap, made after
        # dnsmasq started. (Its information-request gets no DNS server while the host serves several IPv6
        # subnets: see calico.dhcp.render.)
        await wait_until(lambda: "fd00:42::f816:3eff:fe00:4006/64" in host.vm_addresses(vm2, 6), timeout=15,
                         what="vm2's SLAAC address in the DHCPv6-stateless subnet")
        assert host.dnsmasq_pid() == pid, "dnsmasq was restarted for a new port"
        assert "fa:16:3e:00:40:05" in host.leases() and "fa:16:3e:00:40:06" in host.leases()
        host.stop_dhclient(vm1, 4)  # vm1 asks again for the address it holds (INIT-REBOOT): acknowledged
        host.dhclient(vm1, 4)
        again = host.answer(vm1, ("REBOOT", "BOUND"), 30)
        assert again is not None and again["new_ip_address"] == "198.18.40.5"
        await wait_until(lambda: host.ping(vm1, "198.18.40.6"), timeout=10, what="vm1 -> vm2 through the host")

        # --- a removed endpoint's MAC gets no answer ----------------------------------------------------
        host.stop_dhclient(vm1, 4)
        host.stop_dhclient(vm1, 6)
        await store.delete("WorkloadEndpoint", endpoint(port(5))["metadata"]["name"], "openstack")
        await wait_until(lambda: "fa:16:3e:00:40:05" not in host.hosts_file(), timeout=10, what="hosts file")
        lost = host.dhclient(vm1, 4, timeout=5, fresh=True)
        assert lost.wait(30) != 0, "a removed port's MAC got a lease"
        assert host.answer(vm1, ("BOUND",), 0.1) is None
        assert host.dnsmasq_pid() == pid and host.alive("agent") and host.alive("felix")

        # --- a new subnet restarts dnsmasq; the lease file keeps vm2's lease, which it renews --------------
        extra = {**SUBNETS[0], "id": "sub-v4b", "cidr": "198.18.42.0/24", "gateway_ip": "198.18.42.1",
                 "host_routes": []}
        await kv.put(dhcp_subnet_prefix("no-region") + "sub-v4b", json.dumps(subnets.record(extra)).encode())
        await wait_until(lambda: host.dnsmasq_pid() not in (None, pid), timeout=10, what="dnsmasq restarted")
        assert "fa:16:3e:00:40:06" in host.leases()
        host.stop_dhclient(vm2, 4)
        host.dhclient(vm2, 4)
        renewed = host.answer(vm2, ("REBOOT", "BOUND"), 30)
        assert renewed is not None and renewed["new_ip_address"] == "198.18.40.6"

        # --- a killed agent: its dnsmasq goes on answering; the next agent replaces it -----------------------
        child = host.dnsmasq_pid()
        host.kill("agent")
        host.stop_dhclient(vm2, 4)
        host.dhclient(vm2, 4)
        assert host.answer(vm2, ("REBOOT", "BOUND"), 30) is not None, "the orphaned dnsmasq stopped answering"
        host.start_agent()
        await wait_until(lambda: host.dnsmasq_pid() not in (None, child) and not process_running(child),
                         timeout=10, what="the leftover dnsmasq replaced")
        host.stop_dhclient(vm2, 4)
        host.dhclient(vm2, 4)
        assert host.answer(vm2, ("REBOOT", "BOUND"), 30) is not None
    finally:
        await kv.close()

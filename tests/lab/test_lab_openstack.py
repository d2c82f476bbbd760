"""OpenStack end to end on the lab: the real Neutron API server with the calico driver, driven by the unmodified
`openstack` CLI; VMs booted on two compute hosts; real traffic allowed and blocked by security groups.

The Neutron subnet 198.19.64.0/24 lies outside the lab's own pool; a disabled IPPool covers it (Calico's IPAM
never hands it out, BGP advertises the VMs' /32s from their hosts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from calico.lab.probe import probe
from tests.lab.conftest import Lab, LabFactory

pytestmark = pytest.mark.heavy

VM_POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: openstack-vms
spec:
  cidr: 198.19.64.0/18
  disabled: true
  natOutgoing: false
"""


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


class OpenStackCLI:
    def __init__(self, lab: Lab) -> None:
        out = lab.cli("env").stdout
        self.env = dict(os.environ)
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            self.env[key] = value.strip("'")

    def __call__(self, *args: str) -> dict:
        proc = subprocess.run(["openstack", *args, "-f", "json"], env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def quiet(self, *args: str) -> None:
        proc = subprocess.run(["openstack", *args], env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}"


@pytest.fixture(scope="module")
def cloud(lab_factory: LabFactory) -> Iterator[tuple[Lab, OpenStackCLI]]:
    lab = lab_factory("nftables", "embedded", "--hosts", "2")
    try:
        lab.apply(VM_POOL)
        lab.cli("openstack", "up", timeout=180)
        yield lab, OpenStackCLI(lab)
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None, timeout=120)


def test_security_groups_decide_what_reaches_vms(cloud: tuple[Lab, OpenStackCLI]) -> None:
    lab, os_cli = cloud
    net = os_cli("network", "create", "net1")
    os_cli("subnet", "create", "sub1", "--network", net["id"], "--subnet-range", "198.19.64.0/24")
    web = os_cli("security", "group", "create", "web")
    os_cli("security", "group", "rule", "create", web["id"], "--ingress", "--protocol", "tcp", "--dst-port", "8080")
    p1 = os_cli("port", "create", "p1", "--network", net["id"], "--security-group", web["id"])
    p2 = os_cli("port", "create", "p2", "--network", net["id"])  # the project's default group
    lab.cli("vm", "boot", "vm1", "--host", "h1", "--port", p1["id"], "--static", timeout=120)
    lab.cli("vm", "boot", "vm2", "--host", "h2", "--port", p2["id"], "--static", timeout=120)
    lab.cli("wait", "--timeout", "60", timeout=90)
    # Felix reports the endpoints up; the driver's leader makes the ports ACTIVE
    assert eventually(lambda: all(os_cli("port", "show", p["id"])["status"] == "ACTIVE" for p in (p1, p2)))
    # web allows tcp 8080 in from anywhere, nothing else
    assert eventually(lambda: lab.can("vm2", "vm1", port=8080))
    assert not lab.can("vm2", "vm1", port=9090)
    # the default group lets in only its own members: vm1 (web only) is not one
    assert not lab.can("vm1", "vm2", port=8080)
    os_cli.quiet("port", "set", p1["id"], "--security-group", os_cli("port", "show", p2["id"])["security_group_ids"][0])
    assert eventually(lambda: lab.can("vm1", "vm2", port=8080))  # remote-group membership took effect


def probe_to(lab: Lab, src: str, dst: str, ip: str, port: int = 8080, listen: tuple[str, int] | None = None,
             src_ip: str = "") -> bool:
    st = lab.state
    return probe(st.workloads[src].netns, st.workloads[dst].netns, ip, "tcp", port, 1.0, src_ip=src_ip,
                 listen=listen).ok


@pytest.fixture(scope="module")
def net(cloud: tuple[Lab, OpenStackCLI]) -> dict:
    _, os_cli = cloud
    found = os_cli("network", "list", "--name", "net2")
    if found:
        return found[0]
    n = os_cli("network", "create", "net2")
    os_cli("subnet", "create", "sub2", "--network", n["id"], "--subnet-range", "198.19.65.0/24")
    return n


def test_port_security_off_means_no_filtering(cloud: tuple[Lab, OpenStackCLI], net: dict) -> None:
    lab, os_cli = cloud
    closed = os_cli("security", "group", "create", "closed")
    for rule in os_cli("security", "group", "rule", "list", closed["id"]):  # Neutron's default egress rules
        os_cli.quiet("security", "group", "rule", "delete", rule["ID"])
    a = os_cli("port", "create", "ps-a", "--network", net["id"], "--security-group", closed["id"])
    b = os_cli("port", "create", "ps-b", "--network", net["id"], "--no-security-group", "--disable-port-security")
    lab.cli("vm", "boot", "psa", "--host", "h1", "--port", a["id"], "--static", timeout=120)
    lab.cli("vm", "boot", "psb", "--host", "h2", "--port", b["id"], "--static", timeout=120)
    # psa's group allows nothing in or out; psb is not filtered at all (and not checked for spoofing)
    assert not eventually(lambda: lab.can("psa", "psb"), 3.0)
    assert not lab.can("psb", "psa")
    os_cli("security", "group", "rule", "create", closed["id"], "--egress", "--protocol", "tcp")
    assert eventually(lambda: lab.can("psa", "psb"))
    assert not lab.can("psb", "psa")


def test_anti_spoofing_and_allowed_address_pairs(cloud: tuple[Lab, OpenStackCLI], net: dict) -> None:
    lab, os_cli = cloud
    anyin = os_cli("security", "group", "create", "anyin")
    os_cli("security", "group", "rule", "create", anyin["id"], "--ingress", "--protocol", "tcp")
    s = os_cli("port", "create", "sp-s", "--network", net["id"], "--security-group", anyin["id"])
    d = os_cli("port", "create", "sp-d", "--network", net["id"], "--security-group", anyin["id"])
    lab.cli("vm", "boot", "sps", "--host", "h1", "--port", s["id"], "--static", timeout=120)
    lab.cli("vm", "boot", "spd", "--host", "h1", "--port", d["id"], "--static", timeout=120)
    assert eventually(lambda: lab.can("sps", "spd"))
    # the VM takes an address that is not its own: its packets are dropped at its tap
    spoofed = "198.19.65.200"
    lab.cli("exec", "sps", "ip", "addr", "add", f"{spoofed}/32", "dev", "eth0")
    # the way back to it, as an operator routes a VRRP address (Neutron's address pairs route nothing)
    lab.in_host("ip", "route", "replace", f"{spoofed}/32", "dev", lab.state.workloads["sps"].iface, host="h1")
    dst = lab.state.workloads["spd"].ipv4
    assert not probe_to(lab, "sps", "spd", dst, src_ip=spoofed)
    # allowed as an address pair, it passes
    os_cli.quiet("port", "set", s["id"], "--allowed-address", f"ip-address={spoofed}")
    assert eventually(lambda: probe_to(lab, "sps", "spd", dst, src_ip=spoofed))
    lab.in_host("ip", "route", "del", f"{spoofed}/32", host="h1")


def test_vm_gets_its_address_by_dhcp(cloud: tuple[Lab, OpenStackCLI], net: dict) -> None:
    lab, os_cli = cloud
    web = os_cli("security", "group", "show", "web")
    port = os_cli("port", "create", "dhcp-port", "--network", net["id"], "--security-group", web["id"])
    lab.cli("vm", "boot", "dvm", "--host", "h2", "--port", port["id"], timeout=120)  # no --static: DHCP
    fixed = port["fixed_ips"][0]["ip_address"]
    assert f"inet {fixed}/24" in lab.cli("exec", "dvm", "ip", "-4", "addr", "show", "dev", "eth0").stdout
    assert "default via 198.19.65.1" in lab.cli("exec", "dvm", "ip", "-4", "route").stdout
    assert eventually(lambda: lab.can("vm2", "dvm"))
    # a second VM later: the first one's lease is untouched, the new one gets its own address
    port2 = os_cli("port", "create", "dhcp-port2", "--network", net["id"], "--security-group", web["id"])
    lab.cli("vm", "boot", "dvm2", "--host", "h2", "--port", port2["id"], timeout=120)
    fixed2 = port2["fixed_ips"][0]["ip_address"]
    assert f"inet {fixed2}/24" in lab.cli("exec", "dvm2", "ip", "-4", "addr", "show", "dev", "eth0").stdout


def test_metadata_address_reaches_the_nova_metadata_port(cloud: tuple[Lab, OpenStackCLI]) -> None:
    lab, _ = cloud
    st = lab.state
    vm1, h1 = st.workloads["vm1"], st.hosts["h1"]
    # the Nova metadata API's stand-in: a listener on the compute host's 127.0.0.1:8775
    assert eventually(lambda: probe(vm1.netns, h1.netns, "169.254.169.254", "tcp", 80, 1.0,
                                    listen=("127.0.0.1", 8775)).ok)


def test_live_migration_keeps_the_vm_reachable(cloud: tuple[Lab, OpenStackCLI]) -> None:
    lab, _ = cloud
    assert eventually(lambda: lab.can("vm2", "vm1"))
    lab.cli("vm", "migrate", "vm1", "--host", "h2", timeout=120)
    st = lab.state
    assert st.workloads["vm1"].host == "h2"
    assert "tap" in lab.in_host("ip", "link", "show", st.workloads["vm1"].iface, host="h2").stdout
    assert eventually(lambda: lab.can("vm2", "vm1"))  # same address, new host
    # web's rule still decides for VMs outside vm1's other (default) group: 8080 in, 9090 not
    assert eventually(lambda: lab.can("sps", "vm1"))
    assert not lab.can("sps", "vm1", port=9090)


FIP_POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: openstack-floating
spec:
  cidr: 198.19.128.0/24
  disabled: true
  natOutgoing: false
"""


def test_floating_ip_through_neutrons_l3_api(cloud: tuple[Lab, OpenStackCLI], net: dict) -> None:
    lab, os_cli = cloud
    lab.apply(FIP_POOL)
    ext = os_cli("network", "create", "ext", "--external", "--provider-network-type", "flat",
                 "--provider-physical-network", "physnet-ext")
    os_cli("subnet", "create", "ext-sub", "--network", ext["id"], "--subnet-range", "198.19.128.0/24", "--no-dhcp")
    router = os_cli("router", "create", "r1")
    os_cli.quiet("router", "set", router["id"], "--external-gateway", ext["id"])
    os_cli.quiet("router", "add", "subnet", router["id"], "sub2")
    web = os_cli("security", "group", "show", "web")
    f = os_cli("port", "create", "fip-port", "--network", net["id"], "--security-group", web["id"])
    lab.cli("vm", "boot", "fvm", "--host", "h1", "--port", f["id"], "--static", timeout=120)
    fip = os_cli("floating", "ip", "create", ext["id"], "--port", f["id"])
    address = fip["floating_ip_address"]
    st = lab.state
    fixed = st.workloads["fvm"].ipv4
    # vm2 on h2 reaches fvm on h1 through its floating IP (DNAT on h1, the /32 advertised by h1's BIRD)
    assert eventually(lambda: probe_to(lab, "vm2", "fvm", address, listen=(fixed, 8080)), 20.0)
    # policy still applies to the fixed address behind it: web allows 8080 only
    assert not probe_to(lab, "vm2", "fvm", address, port=9090, listen=(fixed, 9090))
    os_cli.quiet("floating", "ip", "unset", "--port", fip["id"])
    assert eventually(lambda: not probe_to(lab, "vm2", "fvm", address, listen=(fixed, 8080)), 10.0)


UDP_RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 7777)); s.settimeout(3)
print("ready", flush=True)
try:
    print(s.recvfrom(64)[0].decode(), flush=True)
except OSError:
    print("nothing", flush=True)
"""


def one_way_udp(lab: Lab, src: str, dst: str) -> bool:
    """Whether a datagram from `src` arrives at `dst` at all (no reply needed: after a MAC change the host's
    neighbour entry still names the old MAC, so a round trip would fail whatever Felix does)."""
    st = lab.state
    d = st.workloads[dst]
    recv = subprocess.Popen(["ip", "netns", "exec", d.netns, sys.executable, "-c", UDP_RECEIVER, d.ipv4],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
        send = "import socket,sys,time\nfor _ in range(5):\n  socket.socket(socket.AF_INET,socket.SOCK_DGRAM)" \
               ".sendto(b'hello',(sys.argv[1],7777)); time.sleep(0.1)"
        subprocess.run(["ip", "netns", "exec", st.workloads[src].netns, sys.executable, "-c", send, d.ipv4],
                       check=True, timeout=10)
        return recv.stdout.readline().strip() == "hello"
    finally:
        recv.kill()
        recv.wait(timeout=5)


def test_a_vm_that_changes_its_mac_is_blocked(cloud: tuple[Lab, OpenStackCLI]) -> None:
    lab, _ = cloud
    # sps (egress open) to psb (port security off: takes anything)
    assert eventually(lambda: one_way_udp(lab, "sps", "psb"), 10.0)
    own = json.loads(lab.cli("exec", "sps", "ip", "-j", "link", "show", "eth0").stdout)[0]["address"]
    lab.cli("exec", "sps", "ip", "link", "set", "eth0", "address", "fa:16:3e:de:ad:01")
    try:
        assert not one_way_udp(lab, "sps", "psb")
    finally:
        lab.cli("exec", "sps", "ip", "link", "set", "eth0", "address", own)
    assert eventually(lambda: one_way_udp(lab, "sps", "psb"), 10.0)

"""`calico-lab vm`: the lab plays Nova's part for a Neutron port.

Enters: a lab with its OpenStack controller up, a port id, a host. Leaves: the port bound to the host
(`binding:host_id`, `device_owner` `compute:nova`, `device_id` the VM's id) through Neutron's API, a VM namespace
wired to the host by a veth whose host end is `tap` + the port id's first 11 characters (as Nova's libvirt
driver names the tap), the port's MAC on the VM side, and the VM's addresses from DHCP (the Calico DHCP agent) or,
with `static`, from the port's fixed IPs as a config drive would give them. A VM is recorded as a lab workload,
so `probe`, `matrix` and `exec` work on it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import time
import uuid
from pathlib import Path
from typing import Any

from calico.lab import plan
from calico.lab.netns import LabError
from calico.lab.state import LabState, Workload
from calico.openstack import names
from calico.openstack.api_source import NeutronAPIError, NeutronClient
from calico.workloads import ip as iputil
from calico.workloads.wiring import unwire_workload, wire_workload


def client(state: LabState) -> NeutronClient:
    if not state.openstack:
        raise LabError("OpenStack is not up in this lab (run `calico-lab openstack up` first)")
    return NeutronClient(f"http://127.0.0.1:{state.openstack['api_port']}")


def vm_id(state: LabState, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"calico-lab/{state.run_id}/{name}"))


def _bind(state: LabState, port_id: str, host: str, device_id: str) -> dict[str, Any]:
    try:
        port = client(state).update_port(port_id, **{"binding:host_id": host, "device_id": device_id,
                                                     "device_owner": "compute:nova"})
    except NeutronAPIError as exc:
        raise LabError(f"binding port {port_id} to {host}: {exc}") from None
    if port.get("binding:vif_type") != "tap":
        raise LabError(f"Neutron did not bind port {port_id} to {host} (vif type {port.get('binding:vif_type')}): "
                       "is calico-felix alive there? (the driver binds only where Felix reports)")
    return port


def _static_config(state: LabState, port: dict[str, Any]) -> list[str]:
    """`ip` commands giving the VM its fixed IPs and gateways, as a config drive would."""
    cmds = []
    api = client(state)
    for fixed in port.get("fixed_ips") or ():
        subnet = api.subnet(fixed["subnet_id"])
        net = ipaddress.ip_network(subnet["cidr"])
        cmds.append(f"addr add {fixed['ip_address']}/{net.prefixlen} dev eth0" + (" nodad" if net.version == 6
                                                                                  else ""))
        if subnet.get("gateway_ip"):
            cmds.append(f"route add default via {subnet['gateway_ip']} dev eth0")
    return cmds


def _addresses(port: dict[str, Any]) -> tuple[str, str]:
    fixed = [f["ip_address"] for f in port.get("fixed_ips") or ()]
    v4 = next((a for a in fixed if ipaddress.ip_address(a).version == 4), "")
    v6 = next((a for a in fixed if ipaddress.ip_address(a).version == 6), "")
    return v4, v6


def _plug(state: LabState, vm_ns: str, host_name: str, port: dict[str, Any], create: bool) -> str:
    host = state.hosts.get(host_name)
    if host is None:
        raise LabError(f"no host {host_name!r} in this lab")
    tap = names.tap_name(port["id"])
    if create:
        wire_workload(host.netns, vm_ns, tap, None, None, mtu=plan.workload_mtu(state.encap))
    else:  # the VM's namespace lives on (its memory, in a live migration): only its link moves
        iputil.ip_batch(host.netns, [f"link add {tap} mtu {plan.workload_mtu(state.encap)} type veth peer name "
                                     f"eth0 mtu {plan.workload_mtu(state.encap)} netns {vm_ns}",
                                     f"link set {tap} address ee:ee:ee:ee:ee:ee", f"link set {tap} up"])
    iputil.ip_batch(vm_ns, [f"link set eth0 address {port['mac_address']}", "link set eth0 up"])
    return tap


def _wait_served(state: LabState, host_name: str, mac: str, timeout: float = 5.0) -> None:
    """Nova starts a guest once Neutron says its port is plugged; the lab's stand-in: the host's DHCP agent lists
    the port's MAC (else the guest's first DISCOVER can beat the agent and wait a whole retransmit, 1 s). After
    `timeout` the VM boots anyway, as Nova does when vif_plugging_is_fatal is off."""
    hosts_file = Path(state.openstack.get("dir", "")).parent / host_name / "dhcp" / "hosts"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if mac.lower() in hosts_file.read_text().lower():
                return
        time.sleep(0.01)


def boot(state: LabState, name: str, host_name: str, port_id: str, dhcp: Any = None) -> Workload:
    """Bind, wire and configure one VM; `dhcp(vm_ns)` runs a DHCP client (None: static configuration)."""
    if name in state.workloads:
        raise LabError(f"a workload or VM named {name!r} exists already")
    device_id = vm_id(state, name)
    port = _bind(state, port_id, host_name, device_id)
    vm_ns = f"{state.prefix}vm-{name}"
    try:
        tap = _plug(state, vm_ns, host_name, port, create=True)
        if dhcp is None:
            iputil.ip_batch(vm_ns, _static_config(state, port))
        else:
            _wait_served(state, host_name, port["mac_address"])
            dhcp(vm_ns)
    except BaseException:
        unwire_workload(vm_ns)
        raise
    v4, v6 = _addresses(port)
    return Workload(name=name, host=host_name, netns=vm_ns, iface=tap, ipv4=v4, ipv6=v6, namespace=names.NAMESPACE,
                    endpoint_name=names.endpoint_name(host_name, device_id, port_id), port_id=port_id)


def delete(state: LabState, vm: Workload) -> None:
    """Nova's delete: the VM goes, its port is unbound (the port itself stays, as with a pre-made port)."""
    unwire_workload(vm.netns)
    try:
        client(state).update_port(vm.port_id, **{"binding:host_id": "", "device_id": "", "device_owner": ""})
    except NeutronAPIError as exc:
        raise LabError(f"unbinding port {vm.port_id}: {exc}") from None


def migrate(state: LabState, vm: Workload, host_name: str) -> Workload:
    """Live migration: plug on the destination, move the binding, unplug the source; the VM keeps its
    addresses and routes (its namespace is its memory)."""
    if host_name == vm.host:
        raise LabError(f"VM {vm.name} is on {host_name} already")
    old_host = state.hosts[vm.host]
    [link] = json.loads(iputil.run("ip", "-n", vm.netns, "-j", "addr", "show", "dev", "eth0").stdout)
    saved_addrs = [(a["family"], f"{a['local']}/{a['prefixlen']}") for a in link.get("addr_info", [])
                   if a.get("scope") == "global"]
    saved_routes = [iputil.run("ip", "-n", vm.netns, *fam, "route", "show", "dev", "eth0").stdout
                    for fam in ((), ("-6",))]
    port = client(state).port(vm.port_id)
    iputil.ip(old_host.netns, "link", "del", vm.iface)  # the VM's side goes with it
    _plug(state, vm.netns, host_name, port, create=False)
    cmds = []
    for family, cidr in saved_addrs:
        cmds.append(f"addr add {cidr} dev eth0" + (" nodad" if family == "inet6" else ""))
    for text in saved_routes:  # the family follows from the gateway's address
        cmds += [f"route add {line.strip()} dev eth0" for line in text.splitlines()
                 if (line.startswith("default") or " via " in line) and "proto kernel" not in line]
    iputil.ip_batch(vm.netns, cmds)
    _bind(state, vm.port_id, host_name, vm_id(state, vm.name))
    return Workload(**{**vm.__dict__, "host": host_name,
                       "endpoint_name": names.endpoint_name(host_name, vm_id(state, vm.name), vm.port_id)})

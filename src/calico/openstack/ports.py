"""Neutron ports → WorkloadEndpoints (and a NetworkSet for allowed address pairs). Pure.

Only VM ports are endpoints (`device_owner` `compute:*`) bound to a host. What filters a port:
- security groups: the port carries each group's label; each group's policy selects it;
- no group, or `admin_state_up` false: no group labels and no profile, so Felix drops all its traffic;
- `port_security_enabled` false: no group labels, every source address and MAC allowed (no anti-spoofing) and
  the allow-all profile;
- otherwise the endpoint's `mac` is the port's: Felix drops frames from any other MAC;
- `allowed_address_pairs`: their addresses pass anti-spoofing, and a NetworkSet with the port's group labels
  puts them in remote-group rules (selectors match network sets as they match endpoints).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.openstack import names

Doc = dict[str, Any]
API = "projectcalico.org/v3"


@dataclass(frozen=True)
class PortContext:
    """What a port's endpoint needs beyond the port itself."""

    subnets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # id → subnet (for gateways)
    network: Mapping[str, Any] | None = None
    project_name: str | None = None
    floating_ips: Sequence[Mapping[str, Any]] = ()  # floating IPs whose port_id is this port


def is_vm_port(port: Mapping[str, Any]) -> bool:
    return str(port.get("device_owner") or "").startswith("compute:")


def host_of(port: Mapping[str, Any]) -> str | None:
    return port.get("binding:host_id") or None


def _host_net(addr: str) -> str:
    ip = ipaddress.ip_address(addr)
    return f"{ip}/{ip.max_prefixlen}"


def _security_on(port: Mapping[str, Any]) -> bool:
    return port.get("port_security_enabled", True) is not False


def group_labels(port: Mapping[str, Any]) -> dict[str, str]:
    """The labels that make the port a member of its security groups (none while it has no filtering)."""
    if not port.get("admin_state_up", True) or not _security_on(port):
        return {}
    return {names.sg_label(sg): "" for sg in port.get("security_groups") or ()}


def _mac_checked(port: Mapping[str, Any]) -> bool:
    """Felix drops frames from another MAC than the endpoint's `mac`: given unless port security is off or an
    allowed address pair brings a MAC of its own (Felix knows one MAC per endpoint)."""
    mac = str(port.get("mac_address") or "").lower()
    pair_macs = {str(p.get("mac_address") or mac).lower() for p in port.get("allowed_address_pairs") or ()}
    return bool(mac) and _security_on(port) and pair_macs <= {mac}


def _pair_nets(port: Mapping[str, Any]) -> list[str]:
    return sorted({str(ipaddress.ip_network(p["ip_address"], strict=False))
                   for p in port.get("allowed_address_pairs") or () if p.get("ip_address")})


def endpoint(port: Mapping[str, Any], ctx: PortContext | None = None) -> Doc:
    """The WorkloadEndpoint for a bound VM port."""
    ctx = ctx or PortContext()
    host = host_of(port)
    if not host:
        raise ValueError(f"port {port['id']} is not bound to a host")
    labels = {names.ORCHESTRATOR_LABEL: names.ORCHESTRATOR, names.NAMESPACE_LABEL: names.NAMESPACE,
              **group_labels(port)}
    if port.get("project_id") or port.get("tenant_id"):
        labels[names.PROJECT_ID_LABEL] = names.label_value(port.get("project_id") or port.get("tenant_id"))
    if ctx.project_name and names.label_value(ctx.project_name):
        labels[names.PROJECT_NAME_LABEL] = names.label_value(ctx.project_name)
    labels[names.NETWORK_ID_LABEL] = names.label_value(port["network_id"])
    if ctx.network and names.label_value(ctx.network.get("name")):
        labels[names.NETWORK_NAME_LABEL] = names.label_value(ctx.network.get("name"))
    fixed = [f["ip_address"] for f in port.get("fixed_ips") or ()]
    spec: Doc = {
        "orchestrator": names.ORCHESTRATOR, "node": host, "workload": port.get("device_id") or port["id"],
        "endpoint": port["id"], "interfaceName": names.tap_name(port["id"]),
        "ipNetworks": sorted({_host_net(a) for a in fixed}), "profiles": [],
    }
    if _mac_checked(port):
        spec["mac"] = port["mac_address"].lower()
    for f in port.get("fixed_ips") or ():
        gw = (ctx.subnets.get(f.get("subnet_id", "")) or {}).get("gateway_ip")
        if gw:
            spec["ipv6Gateway" if ipaddress.ip_address(gw).version == 6 else "ipv4Gateway"] = gw
    nats = sorted({(fip["fixed_ip_address"], fip["floating_ip_address"]) for fip in ctx.floating_ips
                   if fip.get("fixed_ip_address") in fixed and fip.get("floating_ip_address")})
    if nats:
        spec["ipNATs"] = [{"internalIP": i, "externalIP": e} for i, e in nats]
    if port.get("admin_state_up", True):
        if not _security_on(port):
            spec["profiles"] = [names.NO_PORT_SECURITY_PROFILE]
            spec["allowSpoofedSourcePrefixes"] = ["0.0.0.0/0", "::/0"]
        elif _pair_nets(port):
            spec["allowSpoofedSourcePrefixes"] = _pair_nets(port)
    name = names.endpoint_name(host, spec["workload"], port["id"])
    return {"apiVersion": API, "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": names.NAMESPACE, "labels": labels}, "spec": spec}


def pair_set(port: Mapping[str, Any]) -> Doc | None:
    """The NetworkSet carrying a port's allowed address pairs into its groups (None: the port needs none)."""
    nets = _pair_nets(port)
    labels = group_labels(port)
    if not nets or not labels:
        return None
    return {"apiVersion": API, "kind": "NetworkSet",
            "metadata": {"name": names.aap_set_name(port["id"]), "namespace": names.NAMESPACE, "labels": labels},
            "spec": {"nets": nets}}


def no_port_security_profile() -> Doc:
    """The profile of ports with port security off: everything in, everything out."""
    return {"apiVersion": API, "kind": "Profile", "metadata": {"name": names.NO_PORT_SECURITY_PROFILE},
            "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}

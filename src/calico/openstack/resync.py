"""Neutron's view, complete or scoped → the Calico documents that must exist. Pure.

A `NeutronView` is what a resync read from Neutron (its database through the plugin, or its API): ports,
security groups with their rules, subnets, networks, floating IPs and address groups. `desired()` maps all of it;
`Scope` limits a resync to one network, subnet, port or security group: then only the documents for the ports
and groups in scope are compared, and only those are created, fixed or deleted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.datastore.keys import dhcp_subnet_prefix
from calico.openstack import names, ports, secgroups, subnets
from calico.resources import Resource

Doc = dict[str, Any]


@dataclass(frozen=True)
class NeutronView:
    ports: Sequence[Mapping[str, Any]] = ()
    security_groups: Sequence[Mapping[str, Any]] = ()
    subnets: Sequence[Mapping[str, Any]] = ()
    networks: Sequence[Mapping[str, Any]] = ()
    floating_ips: Sequence[Mapping[str, Any]] = ()
    address_groups: Sequence[Mapping[str, Any]] = ()
    project_names: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Scope:
    """What a resync covers; all fields None means everything."""

    network: str | None = None
    subnet: str | None = None
    port: str | None = None
    security_group: str | None = None

    @property
    def everything(self) -> bool:
        return not (self.network or self.subnet or self.port or self.security_group)

    def covers_port(self, port: Mapping[str, Any]) -> bool:
        if self.everything:
            return True
        if self.port:
            return port["id"] == self.port
        if self.network:
            return port.get("network_id") == self.network
        if self.subnet:
            return any(f.get("subnet_id") == self.subnet for f in port.get("fixed_ips") or ())
        return False

    def covers_group(self, sg_id: str) -> bool:
        return self.everything or self.security_group == sg_id


def endpoint_ports(view: NeutronView) -> list[Mapping[str, Any]]:
    """The ports that are Calico endpoints: VM ports bound to a host."""
    return [p for p in view.ports if ports.is_vm_port(p) and ports.host_of(p)]


def port_documents(port: Mapping[str, Any], view: NeutronView, subnets: Mapping[str, Any] | None = None,
                   networks: Mapping[str, Any] | None = None,
                   fips: Mapping[str, list[Mapping[str, Any]]] | None = None) -> list[Doc]:
    subnets = subnets if subnets is not None else {s["id"]: s for s in view.subnets}
    networks = networks if networks is not None else {n["id"]: n for n in view.networks}
    if fips is None:
        fips = _fips_by_port(view)
    project = port.get("project_id") or port.get("tenant_id") or ""
    ctx = ports.PortContext(subnets=subnets, network=networks.get(port["network_id"]),
                            project_name=view.project_names.get(project), floating_ips=fips.get(port["id"], ()))
    docs = [ports.endpoint(port, ctx)]
    pair_set = ports.pair_set(port)
    if pair_set is not None:
        docs.append(pair_set)
    return docs


def _fips_by_port(view: NeutronView) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for fip in view.floating_ips:
        if fip.get("port_id"):
            out.setdefault(fip["port_id"], []).append(fip)
    return out


def address_groups(view: NeutronView) -> secgroups.AddressGroups:
    return secgroups.AddressGroups({ag["id"]: list(ag.get("addresses") or ()) for ag in view.address_groups})


def desired(view: NeutronView, scope: Scope | None = None) -> tuple[list[Doc], list[str]]:
    """The documents in scope, and the problems (a group or port that cannot be mapped, by id)."""
    scope = scope or Scope()
    docs: list[Doc] = []
    problems: list[str] = []
    subnets = {s["id"]: s for s in view.subnets}
    networks = {n["id"]: n for n in view.networks}
    fips = _fips_by_port(view)
    for port in endpoint_ports(view):
        if scope.covers_port(port):
            try:
                docs.extend(port_documents(port, view, subnets, networks, fips))
            except (KeyError, ValueError) as exc:
                problems.append(f"port {port.get('id')}: {exc}")
    groups = address_groups(view)
    for sg in view.security_groups:
        if scope.covers_group(sg["id"]):
            docs.append(secgroups.policy(sg, groups, problems))
    return docs, problems


def subnet_records(view: NeutronView, region: str, scope: Scope | None = None) -> dict[str, dict[str, Any]]:
    """The DHCP agents' subnet records (key → data) for the subnets in scope."""
    scope = scope or Scope()
    out = {}
    for subnet in view.subnets:
        if scope.everything or subnet["id"] == scope.subnet or subnet.get("network_id") == scope.network:
            data = subnets.record(subnet)
            if data is not None:
                out[dhcp_subnet_prefix(region) + subnet["id"]] = data
    return out


def owned_by(scope: Scope, view: NeutronView) -> Any:
    """Which stored resources a resync may delete: in a scoped one, the scope's own (a port deleted from
    Neutron is recognised by its endpoint's name, network label or addresses)."""
    in_scope_ports = {p["id"] for p in view.ports if scope.covers_port(p)}
    cidrs = [ipaddress.ip_network(s["cidr"]) for s in view.subnets if s["id"] == scope.subnet and s.get("cidr")]

    def endpoint_in_scope(port_id: str, res: Resource) -> bool:
        if scope.everything or port_id in in_scope_ports or port_id == scope.port:
            return True
        if scope.network:
            return (res.metadata.labels or {}).get(names.NETWORK_ID_LABEL) == names.label_value(scope.network)
        nets = [ipaddress.ip_network(n) for n in res.spec.ipNetworks or ()]
        return any(n.version == c.version and n.subnet_of(c) for n in nets for c in cidrs)  # type: ignore[arg-type]

    def owned(kind: str, name: str, res: Resource) -> bool:
        if kind == "NetworkPolicy":
            sg_id = names.sg_id_of_policy(name)
            return sg_id is not None and scope.covers_group(sg_id)
        if kind == "NetworkSet":
            port_id = name[len(names.AAP_SET_PREFIX):] if name.startswith(names.AAP_SET_PREFIX) else None
        else:
            port_id = names.port_of_endpoint(name)
        return port_id is not None and endpoint_in_scope(port_id, res) if kind == "WorkloadEndpoint" else (
            port_id is not None and (scope.everything or port_id in in_scope_ports or port_id == scope.port))

    return owned

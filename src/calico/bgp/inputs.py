"""What the BGP renderer reads, and the settings Calico derives from it (pure).

In: the resources the daemon follows (Nodes, BGPConfigurations, BGPPeers, IPPools) and this node's confirmed
blocks, as one frozen `BGPInputs`. Out: `NodeBGP` (one node as BGP sees it: addresses, AS, port, cluster ID)
and `ClusterBGP` (the settings that hold for this node: mesh, log level, bind mode, ...).

Precedence, as Calico has it: a node's AS is `Node.spec.bgp.asNumber`, else the `default` BGPConfiguration's
`asNumber`, else 64512. `node.<name>` BGPConfiguration overrides `default` for the fields it sets, except the
cluster-wide ones (`nodeToNodeMeshEnabled`, `asNumber`, `nodeMeshPassword`, `nodeMeshMaxRestartTime`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from calico.resources import BGPConfiguration, BGPPeer, IPPool, Node
from calico.resources.bgp import DEFAULT_AS_NUMBER, DEFAULT_LISTEN_PORT, BGPPassword

__all__ = ["BGPInputs", "ClusterBGP", "NodeBGP", "RenderError", "SecretRef", "cluster_settings", "node_bgp"]

DEFAULT_CONFIG = "default"

# A password's Kubernetes-style reference: (secret name, key).
SecretRef = tuple[str, str]


class RenderError(Exception):
    """No configuration can be rendered for this node (the message says why); the running one stays."""


@dataclass(frozen=True)
class BGPInputs:
    node_name: str
    nodes: Mapping[str, Node] = field(default_factory=dict)
    configs: Mapping[str, BGPConfiguration] = field(default_factory=dict)  # by name: default, node.<name>
    peers: Mapping[str, BGPPeer] = field(default_factory=dict)
    pools: Mapping[str, IPPool] = field(default_factory=dict)
    blocks: frozenset[str] = frozenset()  # this node's confirmed blocks (CIDRs)

    def secret_refs(self) -> set[SecretRef]:
        """Every password reference a render may need (so the shell can read them first)."""
        passwords = [p.spec.password for p in self.peers.values()]
        default = self.configs.get(DEFAULT_CONFIG)
        if default is not None:
            passwords.append(default.spec.nodeMeshPassword)
        return {ref for pw in passwords if (ref := password_ref(pw)) is not None}


def password_ref(password: BGPPassword | None) -> SecretRef | None:
    if password is None or password.secretKeyRef is None:
        return None
    return (password.secretKeyRef.name, password.secretKeyRef.key)


@dataclass(frozen=True, slots=True)
class NodeBGP:
    """One node as BGP sees it."""

    name: str
    ipv4: str | None  # address only (the Node holds it with its subnet length)
    ipv6: str | None
    as_number: int
    port: int
    cluster_id: str | None  # set: this node is a route reflector
    labels: Mapping[str, str]

    def address(self, version: int) -> str | None:
        return self.ipv4 if version == 4 else self.ipv6


@dataclass(frozen=True, slots=True)
class ClusterBGP:
    """The BGPConfiguration settings that hold for this node."""

    mesh: bool
    mesh_password: BGPPassword | None
    mesh_max_restart: str | None  # a duration
    log_severity: str
    bind_node_ip: bool
    ignored_interfaces: tuple[str, ...]


def _address(iface: str | None) -> str | None:
    return None if iface is None else str(ipaddress.ip_interface(iface).ip)


def _listen_port(inputs: BGPInputs, name: str) -> int:
    for cfg_name in (f"node.{name}", DEFAULT_CONFIG):
        cfg = inputs.configs.get(cfg_name)
        if cfg is not None and cfg.spec.listenPort is not None:
            return cfg.spec.listenPort
    return DEFAULT_LISTEN_PORT


def node_bgp(inputs: BGPInputs, node: Node) -> NodeBGP | None:
    """The node's BGP view, or None when it takes no part in BGP (no `spec.bgp` address)."""
    bgp = node.spec.bgp
    if bgp is None or (bgp.ipv4Address is None and bgp.ipv6Address is None):
        return None
    default = inputs.configs.get(DEFAULT_CONFIG)
    cluster_as = default.spec.asNumber if default is not None else None
    return NodeBGP(
        name=node.metadata.name,
        ipv4=_address(bgp.ipv4Address),
        ipv6=_address(bgp.ipv6Address),
        as_number=bgp.asNumber or cluster_as or DEFAULT_AS_NUMBER,
        port=_listen_port(inputs, node.metadata.name),
        cluster_id=bgp.routeReflectorClusterID,
        labels=node.metadata.labels or {},
    )


def cluster_settings(inputs: BGPInputs) -> ClusterBGP:
    default = inputs.configs.get(DEFAULT_CONFIG)
    own = inputs.configs.get(f"node.{inputs.node_name}")
    specs = [c.spec for c in (own, default) if c is not None]

    def first(name: str) -> object:
        return next((v for s in specs if (v := getattr(s, name)) is not None), None)

    dspec = default.spec if default is not None else None
    mesh = dspec is None or dspec.nodeToNodeMeshEnabled is not False
    return ClusterBGP(
        mesh=mesh,
        mesh_password=dspec.nodeMeshPassword if dspec is not None and mesh else None,
        mesh_max_restart=dspec.nodeMeshMaxRestartTime if dspec is not None and mesh else None,
        log_severity=str(first("logSeverityScreen") or "Info"),
        bind_node_ip=first("bindMode") == "NodeIP",
        ignored_interfaces=tuple(first("ignoredInterfaces") or ()),  # type: ignore[call-overload]
    )

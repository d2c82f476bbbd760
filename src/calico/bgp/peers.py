"""Which BGP sessions this node opens (pure): the node-to-node mesh, BGPPeers, route reflector clients.

In: `BGPInputs` and the passwords the shell read (`SecretRef` -> text). Out: `Peering`s, one per BIRD `bgp`
protocol, and problems (each names the resource and why something was skipped; never an exception for bad data).

Rules, as Calico has them:
- mesh (`nodeToNodeMeshEnabled`, default on): every other node with a BGP address, per family on the nodes'
  `ipv4Address` / `ipv6Address`, with that node's AS and listen port;
- a BGPPeer applies to this node when its `node` names it, its `nodeSelector` matches its labels, or it sets
  neither (a global peer). It peers with `peerIP` (+ `asNumber`), or with every other node its `peerSelector`
  selects. A node selected by a `peerSelector` peers back with every node the BGPPeer applies to, so one
  BGPPeer (`nodeSelector: all()`, `peerSelector: route-reflector == 'true'`) builds both ends;
- a route reflector (a node with `routeReflectorClusterID`) treats node peers outside its cluster as clients;
- one session per peer address and port: a node-specific BGPPeer wins over a global one, both over the mesh;
- a peer whose password cannot be read (and is not `optional`) is skipped: never an unauthenticated session
  where a password was asked for. A BGPPeer with `filters` is skipped too (BGPFilter is not supported: its
  routes would not be filtered as asked).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from calico.bgp.inputs import BGPInputs, NodeBGP, RenderError, SecretRef, cluster_settings, node_bgp, password_ref
from calico.resources import BGPPeer
from calico.resources.bgp import DEFAULT_LISTEN_PORT, BGPPassword, parse_peer_ip
from calico.resources.fields import duration_seconds
from calico.selector import Selector, SelectorError, parse

__all__ = ["PEER_TYPES", "PeerPlan", "Peering", "SessionOptions", "plan_peerings"]

# BIRD protocol name prefix -> the PEER TYPE `calicoctl node status` prints.
PEER_TYPES = {"Mesh": "node-to-node mesh", "Global": "global", "Node": "node specific"}
_PRIORITY = {"Node": 0, "Global": 1, "Mesh": 2}

MAX_PASSWORD = 80  # TCP MD5 key length limit (TCP_MD5SIG_MAXKEYLEN)
MAX_RESTART_TIME = 4095  # the graceful restart capability's 12-bit field
MAX_KEEPALIVE = 65535 // 3  # hold time (3 x keepalive) is a 16-bit field


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What one source (the mesh, a BGPPeer) asks of every session it makes."""

    origin: str  # for messages: "node-to-node mesh" or "BGPPeer(name)"
    kind: str  # a PEER_TYPES key
    password: str | None = None
    keepalive: int | None = None  # seconds; hold time is three times it
    max_restart: int | None = None  # graceful restart time, seconds
    keep_next_hop: bool = False
    allow_local_as: int | None = None
    ttl_security: int | None = None  # hops
    use_node_ip: bool = True  # False: the kernel picks the source address


@dataclass(frozen=True, slots=True)
class Peering:
    """One BGP session, as BIRD's `bgp` protocol `name` renders it."""

    name: str
    version: int
    address: str
    port: int
    as_number: int
    local_address: str | None  # None: the kernel picks the source address
    local_port: int  # this node's listen port
    local_as: int
    options: SessionOptions
    rr_cluster_id: str | None = None  # set: this node reflects routes to this (client) peer

    @property
    def kind(self) -> str:
        return self.options.kind


@dataclass(frozen=True)
class PeerPlan:
    me: NodeBGP
    peerings: tuple[Peering, ...]
    problems: tuple[str, ...]


class _Skip(Exception):
    """This peering (or BGPPeer) cannot be used; the message says why."""


def plan_peerings(inputs: BGPInputs, secrets: Mapping[SecretRef, str]) -> PeerPlan:
    node = inputs.nodes.get(inputs.node_name)
    if node is None:
        raise RenderError(f"Node({inputs.node_name}) does not exist (calico-node registers it at start)")
    me = node_bgp(inputs, node)
    if me is None:
        raise RenderError(f"Node({inputs.node_name}) has no BGP address (spec.bgp.ipv4Address/ipv6Address)")
    others = [
        nb for name, n in sorted(inputs.nodes.items()) if name != me.name and (nb := node_bgp(inputs, n)) is not None
    ]
    problems: list[str] = []
    candidates: list[Peering] = []
    cluster = cluster_settings(inputs)
    if cluster.mesh:
        try:
            mesh = SessionOptions(
                "node-to-node mesh",
                "Mesh",
                password=_password("BGPConfiguration(default) nodeMeshPassword", cluster.mesh_password, secrets),
                max_restart=_restart_time(cluster.mesh_max_restart),
            )
        except _Skip as e:
            problems.append(f"BGPConfiguration(default): {e}; no node-to-node mesh sessions")
        else:
            for other in others:
                candidates.extend(_node_peerings(me, other, mesh, problems, reflect=False))
    for peer in sorted(inputs.peers.values(), key=lambda p: p.metadata.name):
        try:
            candidates.extend(list(_from_bgppeer(peer, me, others, secrets, problems)))  # all or nothing
        except _Skip as e:
            problems.append(f"BGPPeer({peer.metadata.name}): {e}; skipped")
    return PeerPlan(me, _one_per_peer(candidates), tuple(problems))


def _one_per_peer(candidates: list[Peering]) -> tuple[Peering, ...]:
    """One session per peer address and port (so per name); the most specific source wins."""
    best: dict[tuple[int, str, int], Peering] = {}
    for p in sorted(candidates, key=lambda p: _PRIORITY[p.kind]):  # stable: first source of a kind wins
        best.setdefault((p.version, p.address, p.port), p)
    return tuple(sorted(best.values(), key=lambda p: (p.version, p.name)))


def _applies_to(peer: BGPPeer) -> Callable[[NodeBGP], bool]:
    """Which nodes a BGPPeer configures: the one `node` names, those `nodeSelector` matches, or all."""
    spec = peer.spec
    if spec.node is not None:
        name = spec.node
        return lambda n: n.name == name
    if spec.nodeSelector is not None:
        matches = _selector(spec.nodeSelector, "nodeSelector").evaluate
        return lambda n: matches(n.labels)
    return lambda n: True


def _selector(text: str, field: str) -> Selector:
    try:
        return parse(text)
    except SelectorError as e:
        raise _Skip(f"{field}: {e}") from None


def _from_bgppeer(
    peer: BGPPeer, me: NodeBGP, others: list[NodeBGP], secrets: Mapping[SecretRef, str], problems: list[str]
) -> Iterator[Peering]:
    spec = peer.spec
    applies_to = _applies_to(peer)
    selected = applies_to(me)
    peer_sel = _selector(spec.peerSelector, "peerSelector") if spec.peerSelector is not None else None
    selected_back = peer_sel is not None and peer_sel.evaluate(me.labels)
    if not (selected or selected_back):
        return
    if spec.filters:
        raise _Skip("filters (BGPFilter) are not supported, so its routes cannot be filtered as asked")
    origin = f"BGPPeer({peer.metadata.name})"
    if spec.reachableBy is not None:
        problems.append(f"{origin}: reachableBy is not supported and is ignored")
    opts = SessionOptions(
        origin,
        "Node" if spec.node is not None or spec.nodeSelector is not None else "Global",
        password=_password(f"{origin} password", spec.password, secrets),
        keepalive=_keepalive(spec.keepaliveTime),
        max_restart=_restart_time(spec.maxRestartTime),
        keep_next_hop=spec.keepOriginalNextHop,
        allow_local_as=spec.numAllowedLocalASNumbers or None,
        ttl_security=spec.ttlSecurity or None,
        use_node_ip=spec.sourceAddress != "None",
    )
    if selected and spec.peerIP is not None:
        yield from _ip_peering(spec.peerIP, spec.asNumber, me, opts)
    if selected and peer_sel is not None:
        for other in others:
            if peer_sel.evaluate(other.labels):
                yield from _node_peerings(me, other, opts, problems, reflect=True)
    if selected_back:
        for other in others:
            if applies_to(other):
                yield from _node_peerings(me, other, opts, problems, reflect=True)


def _ip_peering(peer_ip: str, as_number: int | None, me: NodeBGP, opts: SessionOptions) -> Iterator[Peering]:
    addr, port = parse_peer_ip(peer_ip)
    version = 6 if ":" in addr else 4
    if as_number is None:
        raise _Skip(f"peerIP {peer_ip} needs an asNumber")
    local = me.address(version)
    if local is None:
        raise _Skip(f"this node has no IPv{version} address to peer with {addr} from")
    if addr == local:
        return  # this node itself
    yield _peering(opts, version, addr, port or DEFAULT_LISTEN_PORT, as_number, me, local, None)


def _node_peerings(
    me: NodeBGP, other: NodeBGP, opts: SessionOptions, problems: list[str], *, reflect: bool
) -> Iterator[Peering]:
    for version in (4, 6):
        local, remote = me.address(version), other.address(version)
        if local is None or remote is None:
            continue
        if remote == local:
            problems.append(f"Node({other.name}) has this node's IPv{version} address {local}; not peered")
            continue
        # A reflector treats a node peer outside its own cluster as its client.
        client_of = me.cluster_id if reflect and me.cluster_id and other.cluster_id != me.cluster_id else None
        yield _peering(opts, version, remote, other.port, other.as_number, me, local, client_of)


def _peering(
    opts: SessionOptions, version: int, addr: str, port: int, as_number: int, me: NodeBGP, local: str, rr: str | None
) -> Peering:
    name = f"{opts.kind}_{addr.replace('.', '_').replace(':', '_')}"
    if port != DEFAULT_LISTEN_PORT:
        name += f"_port_{port}"
    return Peering(
        name=name,
        version=version,
        address=addr,
        port=port,
        as_number=as_number,
        local_address=local if opts.use_node_ip else None,
        local_port=me.port,
        local_as=me.as_number,
        options=opts,
        rr_cluster_id=rr,
    )


def _password(what: str, password: BGPPassword | None, secrets: Mapping[SecretRef, str]) -> str | None:
    ref = password_ref(password)
    if ref is None:
        return None
    text = secrets.get(ref)
    if text is None:
        optional = password is not None and password.secretKeyRef is not None and password.secretKeyRef.optional
        if optional:
            return None
        raise _Skip(f"{what}: secret {ref[0]!r} key {ref[1]!r} not found")
    if not text or len(text) > MAX_PASSWORD or any(c == '"' or not c.isprintable() for c in text):
        raise _Skip(
            f"{what}: secret {ref[0]!r} key {ref[1]!r} must be 1-{MAX_PASSWORD} printable characters without '\"'"
        )
    return text


def _restart_time(duration: str | None) -> int | None:
    if duration is None:
        return None
    return min(MAX_RESTART_TIME, max(1, math.ceil(duration_seconds(duration))))


def _keepalive(duration: str | None) -> int | None:
    if duration is None:
        return None
    return min(MAX_KEEPALIVE, max(1, math.ceil(duration_seconds(duration))))

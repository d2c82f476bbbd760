"""BIRD 2 configuration text for one node (pure).

In: `BGPInputs`, the passwords the shell read, and Felix's workload interface prefixes. Out: `Rendered` (the
text, the sessions it opens, and problems to log), or `RenderError` when this node cannot be configured at all.

What the text does, per family (4 and 6):
- `kernel4`/`kernel6`: learn the kernel's routes (Felix's workload routes, protocol 80), `persist` and
  `graceful restart` so BIRD's own kernel routes outlive a BIRD restart; into the kernel go BGP-learned routes
  and this node's block blackholes, never a default route, never a destination in a pool whose encapsulation
  Felix programs (vxlanMode / ipipMode not Never);
- `calico_blocks4`/`6`: one blackhole per block this node holds (an unused address in a block dies here);
- `direct`: connected routes, only so next hops learned over multi-hop sessions resolve (nothing exports them);
- to peers (`calico_export_to_peers4`/`6`), only inside exportable pools: this node's blocks, and the /32
  (/128) kernel routes on workload interfaces outside them (addresses it borrowed); a route reflector also
  passes on what it learned over BGP. Nothing else: never a default route, never a whole pool;
- from peers: everything but a default route;
- one `bgp` protocol per `Peering` (see `calico.bgp.peers`), from a per-family template: multihop,
  `gateway recursive`, `add paths`, graceful restart, Calico's short connect and retry timers.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from calico.bgp.inputs import BGPInputs, SecretRef, cluster_settings
from calico.bgp.peers import Peering, plan_peerings
from calico.resources import IPPool

__all__ = ["BLOCKS_PROTOCOL", "Rendered", "render_config"]

BLOCKS_PROTOCOL = "calico_blocks"  # + "4" / "6"
GRACEFUL_RESTART_WAIT = 30  # seconds
_HOST_LEN = {4: 32, 6: 128}
_LOG_CLASSES = {
    "Debug": "all",
    "Info": "{ info, remote, warning, error, auth, fatal, bug }",
    "Warning": "{ warning, error, auth, fatal, bug }",
    "Error": "{ error, fatal, bug }",
    "Fatal": "{ fatal, bug }",
}
_NO_LOG = "{ bug }"


@dataclass(frozen=True)
class Rendered:
    text: str
    peerings: tuple[Peering, ...]
    problems: tuple[str, ...]


def render_config(
    inputs: BGPInputs, secrets: Mapping[SecretRef, str], interface_prefixes: Sequence[str] = ("cali",)
) -> Rendered:
    plan = plan_peerings(inputs, secrets)
    cluster = cluster_settings(inputs)
    me = plan.me
    pools = sorted(inputs.pools.values(), key=_pool_order)
    out = [
        f"# BIRD 2 configuration of Calico node {me.name}, written by calico-bgp-daemon from the datastore.",
        "# Do not edit: the next change in the datastore rewrites it.",
        "",
        f"router id {me.ipv4 or _hashed_router_id(me.name)};",
        "timeformat protocol iso long;",
        "# Started with -R, BIRD holds kernel changes until every peer has resent its routes; a peer that is down",
        "# must not hold them for BIRD's default four minutes.",
        f"graceful restart wait {GRACEFUL_RESTART_WAIT};",
        f"log stderr {_LOG_CLASSES.get(cluster.log_severity, _NO_LOG)};",
    ]
    if cluster.log_severity == "Debug":
        out.append("debug protocols all;")
    reflector = me.cluster_id is not None
    blocks = _blocks_by_version(inputs.blocks)
    for version in (4, 6):
        out += _filters(version, pools, blocks[version], interface_prefixes, reflector)
    out += _base_protocols(blocks, interface_prefixes, cluster.ignored_interfaces)
    for version in (4, 6):
        out += _template(version)
    for peering in plan.peerings:
        out += _bgp_protocol(peering, cluster.bind_node_ip)
    return Rendered("\n".join(out) + "\n", plan.peerings, plan.problems)


def _net_order(cidr: str) -> tuple[int, int, int]:
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address), net.prefixlen


def _pool_order(pool: IPPool) -> tuple[int, int, int]:
    return _net_order(pool.spec.cidr)


def _blocks_by_version(blocks: Iterable[str]) -> dict[int, list[str]]:
    ordered = sorted(blocks, key=_net_order)
    return {v: [b for b in ordered if ipaddress.ip_network(b).version == v] for v in (4, 6)}


def _hashed_router_id(name: str) -> str:
    """A stable router id for a node without an IPv4 address (IPv6 only), from its name."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return str(ipaddress.IPv4Address(digest or 1))


def _prefix_set(cidrs: Iterable[str]) -> str:
    return "[ " + ", ".join(f"{c}+" for c in cidrs) + " ]"


def _pool_cidrs(pools: Sequence[IPPool], version: int, *, exportable: bool = False, encap: bool = False) -> list[str]:
    out = []
    for pool in pools:
        spec = pool.spec
        if ipaddress.ip_network(spec.cidr).version != version:
            continue
        if exportable and spec.disableBGPExport:
            continue
        if encap and spec.vxlanMode == "Never" and spec.ipipMode == "Never":
            continue
        out.append(spec.cidr)
    return out


def _iface_match(prefixes: Sequence[str]) -> str:
    return "(" + " || ".join(f'ifname ~ "{p}*"' for p in prefixes) + ")"


def _filters(
    version: int, pools: Sequence[IPPool], blocks: Sequence[str], prefixes: Sequence[str], reflector: bool
) -> list[str]:
    v = version
    exportable = _pool_cidrs(pools, v, exportable=True)
    encap = _pool_cidrs(pools, v, encap=True)
    to_peers = [f"filter calico_export_to_peers{v} {{", "  if net.len = 0 then reject;  # never a default route"]
    if exportable:
        outside_blocks = f" && !(net ~ {_prefix_set(blocks)})" if blocks else ""
        to_peers += [
            f"  if !(net ~ {_prefix_set(exportable)}) then reject;  # only addresses in (exportable) IP pools",
            f'  if proto = "{BLOCKS_PROTOCOL}{v}" then accept;  # this node\'s blocks',
            "  # borrowed addresses: workload routes Felix installed outside this node's blocks",
            f"  if source = RTS_INHERIT && net.len = {_HOST_LEN[v]} && {_iface_match(prefixes)}{outside_blocks} "
            "then accept;",
        ]
        if reflector:
            to_peers.append("  if source = RTS_BGP then accept;  # a route reflector passes on what it learned")
    to_peers += ["  reject;", "}"]
    to_kernel = [f"filter calico_to_kernel{v} {{", "  if net.len = 0 then reject;"]
    if encap:
        to_kernel.append(f"  if net ~ {_prefix_set(encap)} then reject;  # Felix routes VXLAN / IP-in-IP pools")
    to_kernel += [
        f'  if proto = "{BLOCKS_PROTOCOL}{v}" then accept;',
        "  if source = RTS_BGP then accept;",
        "  reject;",
        "}",
    ]
    from_peers = [f"filter calico_import_from_peers{v} {{", "  if net.len = 0 then reject;", "  accept;", "}"]
    return ["", *to_peers, "", *to_kernel, "", *from_peers]


def _base_protocols(blocks: Mapping[int, Sequence[str]], prefixes: Sequence[str], ignored: Sequence[str]) -> list[str]:
    excluded = ", ".join(f'-"{p}*"' for p in prefixes) + "".join(f', -"{i}"' for i in ignored)
    out = [
        "",
        "protocol device {",
        "  scan time 10;",
        "}",
        "",
        "# Connected routes, only for resolving the next hops of multi-hop sessions (no filter exports them).",
        "protocol direct {",
        "  ipv4;",
        "  ipv6;",
        f'  interface {excluded}, "*";',
        "}",
    ]
    for v in (4, 6):
        out += [
            "",
            f"protocol kernel kernel{v} {{",
            f"  ipv{v} {{",
            "    import all;",
            f"    export filter calico_to_kernel{v};",
            "  };",
            "  learn;  # workload routes Felix installs (borrowed addresses are exported from here)",
            "  persist;  # routes stay in the kernel while BIRD is down",
            "  graceful restart;  # after a restart, stale routes go only once the peers have resent theirs",
            "  merge paths on;",
            "  scan time 10;",
            "}",
        ]
    for v in (4, 6):
        out += ["", f"protocol static {BLOCKS_PROTOCOL}{v} {{", f"  ipv{v};"]
        out += [f"  route {b} blackhole;" for b in blocks[v]]
        out.append("}")
    return out


def _template(v: int) -> list[str]:
    return [
        "",
        f"template bgp calico_peer{v} {{",
        "  multihop;",
        "  graceful restart on;",
        "  connect delay time 2;",
        "  connect retry time 5;",
        "  error wait time 5, 30;",
        f"  ipv{v} {{",
        f"    import filter calico_import_from_peers{v};",
        f"    export filter calico_export_to_peers{v};",
        "    gateway recursive;",
        "    add paths on;",
        "  };",
        "}",
    ]


def _bgp_protocol(p: Peering, strict_bind: bool) -> list[str]:
    local = f"{p.local_address} " if p.local_address else ""
    opts = p.options
    out = [
        "",
        f"protocol bgp {p.name} from calico_peer{p.version} {{",
        f'  description "{opts.origin}";',
        f"  local {local}port {p.local_port} as {p.local_as};",
        f"  neighbor {p.address} port {p.port} as {p.as_number};",
    ]
    if strict_bind and p.local_address:
        out.append("  strict bind on;")
    if opts.password is not None:
        out.append(f'  password "{opts.password}";')
    if opts.keepalive is not None:
        out.append(f"  keepalive time {opts.keepalive};")
        out.append(f"  hold time {3 * opts.keepalive};")
    if opts.max_restart is not None:
        out.append(f"  graceful restart time {opts.max_restart};")
    if p.rr_cluster_id is not None:
        out.append("  rr client;")
        out.append(f"  rr cluster id {p.rr_cluster_id};")
    if opts.allow_local_as is not None:
        out.append(f"  allow local as {opts.allow_local_as};")
    if opts.ttl_security is not None:
        out.append("  ttl security on;")
        out.append(f"  multihop {opts.ttl_security};")
    if opts.keep_next_hop:
        out.append(f"  ipv{p.version} {{ next hop keep; }};")
    out.append("}")
    return out

"""Which stages a flow crosses, in the order the kernel meets them.

Enters: the flow's resolved ends (`Endpoint`, or None for a bare address) and the host endpoints it arrives
through (`via`) and leaves through (`leaves`), when given. Leaves: a list of `Hop`s (stage kind, endpoint,
direction) for `walk.py`, or ValueError for a combination that cannot happen. Pure.

The order is the renderers' (see `calico.dataplane.hostendpoints` and the nftables `table` / `hep_chains`):

    from the host out of a host endpoint X (--src hep:X):   untracked egress X (raw output), egress X
    a workload's egress (--src NS/NAME)
    into the host through X (--dst hep:X, or --via hep:X):  untracked ingress X (raw prerouting),
        preDNAT X (before DNAT), then to the host: ingress X; forwarded: applyOnForward ingress X
    a workload's ingress (--dst NS/NAME)
    forwarded out through Y (--leaves-via hep:Y):           applyOnForward egress Y

On one node: a workload to its host (--dst hep:X of the workload's node) meets its egress, then the wl-to-host
stage (DHCP, DNS, ND accepted before the egress; DefaultEndpointToHostAction after it); the host to one of its
workloads is accepted by the output chain, with no policy on either side.

Forwarded traffic leaving through Y meets no untracked stage (raw output sees only what the host sends).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from calico.explain.flow import PartyKind
from calico.explain.world import Endpoint


class HopKind(Enum):
    NORMAL = "normal"  # a workload's policy, or a host endpoint's for traffic to / from the host itself
    UNTRACKED = "untracked"  # doNotTrack policy, before connection tracking
    PRE_DNAT = "preDNAT"  # preDNAT policy, before DNAT (ingress only)
    FORWARD = "forward"  # a host endpoint's applyOnForward policy, for forwarded traffic
    TO_HOST = "to host"  # a workload's traffic to its own host, after its egress: DefaultEndpointToHostAction
    FROM_HOST = "from host"  # the host's own traffic to one of its workloads: accepted, no policy


@dataclass(frozen=True, slots=True)
class Hop:
    kind: HopKind
    end: Endpoint
    inbound: bool


def hops(src: Endpoint | None, dst: Endpoint | None, via: Endpoint | None = None,
         leaves: Endpoint | None = None) -> list[Hop]:
    _check(src, dst, via, leaves)
    if via is None and leaves is None and src is not None and dst is not None and src.node == dst.node:
        if src.kind is PartyKind.WORKLOAD and dst.kind is PartyKind.HOST:
            return [Hop(HopKind.NORMAL, src, False), Hop(HopKind.TO_HOST, dst, True)]
        if src.kind is PartyKind.HOST and dst.kind is PartyKind.WORKLOAD:
            return [Hop(HopKind.FROM_HOST, dst, True)]
    out: list[Hop] = []
    if src is not None:
        if src.kind is PartyKind.HOST:
            out.append(Hop(HopKind.UNTRACKED, src, False))
        out.append(Hop(HopKind.NORMAL, src, False))
    to_host = dst is not None and dst.kind is PartyKind.HOST
    entry = via if via is not None else (dst if to_host else None)
    if entry is not None:
        out += [Hop(HopKind.UNTRACKED, entry, True), Hop(HopKind.PRE_DNAT, entry, True),
                Hop(HopKind.NORMAL if to_host else HopKind.FORWARD, entry, True)]
    if dst is not None and not to_host:
        out.append(Hop(HopKind.NORMAL, dst, True))
    if leaves is not None:
        out.append(Hop(HopKind.FORWARD, leaves, False))
    return out


def _check(src: Endpoint | None, dst: Endpoint | None, via: Endpoint | None, leaves: Endpoint | None) -> None:
    for option, end in (("--via", via), ("--leaves-via", leaves)):
        if end is not None and end.kind is not PartyKind.HOST:
            raise ValueError(f"{option}: needs a host endpoint (hep:NAME)")
    if via is not None and src is not None and src.kind is PartyKind.HOST:
        raise ValueError(f"--via: {src.label} is the host itself, whose traffic does not arrive through an "
                         "interface")
    if leaves is not None and dst is not None and dst.kind is PartyKind.HOST:
        raise ValueError(f"--leaves-via: {dst.label} is the host itself; traffic to it is not forwarded")
    if leaves is not None and src is not None and src.kind is PartyKind.HOST:
        raise ValueError(f"--leaves-via: traffic from {src.label} leaves through its own interface; give the "
                         "host endpoint it leaves by as --src")

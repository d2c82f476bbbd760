"""Backend-neutral facts about host endpoints, failsafe ports and the OpenStack metadata DNAT.

In: a `DesiredState` (its host endpoints and host addresses) and the typed failsafe ports of its
`DataplaneConfig`. Out: plain values both renderers (nftables, iptables) turn into rules, so the two backends
cannot disagree on semantics. Pure: no I/O.

Semantics (Calico's):
  - Traffic to the host arriving on a host endpoint's interface runs the endpoint's ingress tiers, then its
    profiles; traffic from the host leaving it runs the egress tiers, then profiles. Nothing allowed it:
    drop. Failsafe ports are accepted before any of that; replies of accepted connections pass (conntrack).
  - `interfaceName: "*"` covers every interface that has no endpoint of its own, except workload
    interfaces and loopback, which host endpoint rules never police.
  - Forwarded traffic entering / leaving a host endpoint's interface runs only its applyOnForward tiers
    (no profiles); when none apply in that direction, forwarded traffic is left alone. These four chains per
    endpoint are `HEP_ROLES`; the walk through their tiers is `calico.dataplane.tiers`.
  - doNotTrack (untracked) tiers run before connection tracking on everything entering / leaving the
    interface; preDNAT tiers run before DNAT on everything entering it (established flows excepted). In both,
    Allow accepts the packet and makes normal host endpoint policy skip it (untracked: also not tracked, so
    replies need their own Allow), Deny drops, and a packet no rule decided goes on: there is no drop at the
    end of a tier or of the stage (our reading of Calico: only what these policies explicitly allow skips
    normal policy). Failsafe ports are accepted first in both stages.
  - A host endpoint without an interface name covers each host interface holding one of its expectedIPs
    (`DesiredState.host_addresses`, read from the kernel), unless another endpoint names that interface.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace

from calico.calculation import events as ev
from calico.dataplane.config import FailsafePort
from calico.dataplane.state import DesiredState
from calico.dataplane.tiers import Policed, has_direction

WILDCARD = "*"

# The well-known metadata address workloads ask; DataplaneConfig.metadata says where it is DNATed to.
METADATA_IP = "169.254.169.254"
METADATA_PORT = 80


@dataclass(frozen=True, slots=True)
class HepChainRole:
    """One of the four policy chains each host endpoint has; each backend names and dispatches to it."""

    key: str  # "fh" to the host, "th" from the host, "fhf" / "thf" forwarded in / out
    inbound: bool
    forward: bool  # applyOnForward tiers, no profiles; when none apply in this direction the chain returns

    def policed(self, hep: ev.HostEndpointUpdate) -> Policed:
        return Policed(hep.forward_tiers, ()) if self.forward else Policed(hep.tiers, hep.profile_ids)

    def left_alone(self, hep: ev.HostEndpointUpdate) -> bool:
        """Forwarded traffic with no applyOnForward policy in this direction is not policed at all."""
        return self.forward and not has_direction(hep.forward_tiers, self.inbound)


HEP_ROLES = (
    HepChainRole("fh", inbound=True, forward=False),
    HepChainRole("th", inbound=False, forward=False),
    HepChainRole("fhf", inbound=True, forward=True),
    HepChainRole("thf", inbound=False, forward=True),
)


def grouped_ports(failsafes: Iterable[FailsafePort], fam: int | None = None) -> list[tuple[str, str | None, list[int]]]:
    """(protocol, net, sorted ports) groups, so each renders as one rule; nets of the other family left out."""
    groups: dict[tuple[str, str | None], set[int]] = {}
    for f in failsafes:
        if fam is not None and f.net is not None and ipaddress.ip_network(f.net).version != fam:
            continue
        groups.setdefault((f.protocol, f.net), set()).add(f.port)
    keys = sorted(groups, key=lambda k: (k[0], k[1] or ""))
    return [(p, n, sorted(groups[(p, n)])) for p, n in keys]


def active_host_endpoints(state: DesiredState) -> list[ev.HostEndpointUpdate]:
    """One endpoint per interface, wildcard last. An interface named by an endpoint is that endpoint's (the first
    by name when two claim it); an endpoint without a name is resolved to the interfaces holding its
    expectedIPs (a copy with `iface` set per interface); an interface matched by two goes to the first by name."""
    by_iface: dict[str, ev.HostEndpointUpdate] = {}
    by_ip: list[ev.HostEndpointUpdate] = []
    for name in sorted(state.host_endpoints):
        hep = state.host_endpoints[name]
        if hep.iface:
            by_iface.setdefault(hep.iface, hep)
        elif hep.expected_ips:
            by_ip.append(hep)
    for hep in by_ip:
        wanted = {_canonical_ip(ip) for ip in hep.expected_ips} - {None}
        for iface in sorted(state.host_addresses):
            if iface not in by_iface and wanted & state.host_addresses[iface]:
                by_iface[iface] = replace(hep, iface=iface)
    return [by_iface[i] for i in sorted(by_iface, key=lambda i: (i == WILDCARD, i))]


def _canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().split("/", 1)[0]))
    except ValueError:
        return None


def with_untracked(heps: Iterable[ev.HostEndpointUpdate]) -> list[ev.HostEndpointUpdate]:
    """Endpoints some doNotTrack policy applies to (either direction)."""
    return [h for h in heps if any(t.ingress_policies or t.egress_policies for t in h.untracked_tiers)]


def with_pre_dnat(heps: Iterable[ev.HostEndpointUpdate]) -> list[ev.HostEndpointUpdate]:
    """Endpoints some preDNAT policy applies to (ingress only, by Calico's rules)."""
    return [h for h in heps if any(t.ingress_policies for t in h.pre_dnat_tiers)]

"""Calico's whole nftables table, `table inet calico` (IPv4 and IPv6), as a `TableModel`.

In: a `DesiredState` (its config, IP sets, policies, profiles, workload and host endpoints). Out: the
`TableModel` a full replacement writes (`render_model`), or the fail-closed table of the start of day
(`empty_model`). Pure. Its base chains and how the rest hangs off them:

    forward (hook forward)  ct established/related accept; invalid from/to a workload drop; jump hep-fwd-in;
                            iifname <prefix>* jump from-wl-dispatch; oifname <prefix>* jump to-wl-dispatch;
                            jump hep-fwd-out
    input   (hook input)    iifname <prefix>* jump wl-to-host; jump hep-in
    output  (hook output)   host -> local workload traffic is allowed (as in Calico); jump hep-out
    nat-prerouting, nat-output, nat-postrouting   (`nat`) OpenStack metadata DNAT, floating IPs (1:1 NAT
                            through address maps), natOutgoing (masquerade from a natOutgoing pool to outside
                            every pool)
    from-wl-dispatch        iifname vmap @fw-dispatch  (iface : goto fw-<iface>); drop   <- fail closed
    to-wl-dispatch          oifname vmap @tw-dispatch  (iface : goto tw-<iface>); drop
    wl-to-host              ct, OpenStack metadata (when on), DHCP(v6), DNS, IPv6 ND accepted first;
                            jump from-wl-dispatch (egress policy); then DefaultEndpointToHostAction (drop /
                            accept / return)
    fw-/tw-<iface>, pg*-    workload endpoints (`endpoints`); pi-/po-, pri-/pro- policies and profiles
                            (`rules`); s4-/s6-/n4-/n6- sets (`sets`); host endpoint chains (`hep_chains`)
"""

from __future__ import annotations

from calico.dataplane import ruleids as rid
from calico.dataplane import tohost
from calico.dataplane.config import MetadataTarget
from calico.dataplane.nftables import flowlog
from calico.dataplane.nftables.endpoints import dispatch_entries, endpoint_chains
from calico.dataplane.nftables.hep_chains import host_endpoint_chains, state_host_endpoint_chains
from calico.dataplane.nftables.model import NftChain, TableModel
from calico.dataplane.nftables.names import FW_MAP, HEP_FWD_IN, HEP_FWD_OUT, HEP_IN, HEP_OUT, TW_MAP, count, quote
from calico.dataplane.nftables.nat import nat_chains, nat_maps, pool_sets
from calico.dataplane.nftables.rules import policy_chains, profile_chains
from calico.dataplane.nftables.sets import empty_set_for_name, ipset_sets
from calico.dataplane.state import DesiredState

# How `nft list` spells the ICMPv6 types (rendered as it lists them, so a read-back compares equal).
_ND_NAMES = {133: "nd-router-solicit", 134: "nd-router-advert", 135: "nd-neighbor-solicit", 136: "nd-neighbor-advert"}


def base_chains(
    prefixes: tuple[str, ...], endpoint_to_host: str, metadata: MetadataTarget | None = None
) -> list[NftChain]:
    """The fixed filter chains; they depend only on config (interface prefixes, endpoint-to-host action, metadata)."""
    pats = [quote(p + "*") for p in prefixes]
    wl, unknown = rid.Stage.WORKLOAD, rid.Kind.UNKNOWN_IFACE
    invalid_from, invalid_to = (count(rid.verdict(rid.Kind.INVALID, inbound, wl)) for inbound in (False, True))
    forward = ["ct state established,related accept"]
    forward += [f"iifname {p} ct state invalid {invalid_from} drop" for p in pats]
    forward += [f"oifname {p} ct state invalid {invalid_to} drop" for p in pats]
    forward.append(f"jump {HEP_FWD_IN}")
    forward += [f"iifname {p} jump from-wl-dispatch" for p in pats]
    forward += [f"oifname {p} jump to-wl-dispatch" for p in pats]
    forward.append(f"jump {HEP_FWD_OUT}")
    to_host_action = tohost.action(endpoint_to_host)
    if to_host_action != "return":  # return decides nothing: host endpoint policy goes on
        action = rid.Action.ALLOW if to_host_action == "accept" else rid.Action.DENY
        to_host_action = f"{count(rid.verdict(rid.Kind.TO_HOST, False, wl, action))} {to_host_action}"
    # OpenStack metadata (already DNATed in prerouting) is allowed before the workload's egress policy.
    meta = [f"ip daddr {metadata.addr} tcp dport {metadata.port} accept"] if metadata else []
    wl_to_host = [
        "ct state established,related accept",
        f"ct state invalid {invalid_from} drop",
        *meta,
        *(f"meta nfproto ipv{v} udp dport {{ {', '.join(map(str, ports))} }} accept"  # DHCP, DHCPv6
          for v, ports in tohost.DHCP_PORTS.items()),
        f"meta l4proto {{ tcp, udp }} th dport {tohost.DNS_PORT} accept",  # DNS
        f"icmpv6 type {{ {', '.join(_ND_NAMES[t] for t in tohost.ND_TYPES)} }} accept",  # neighbour discovery
        "jump from-wl-dispatch",  # the endpoint's egress policy; unknown interfaces drop there
        to_host_action,
    ]
    chains = [
        NftChain("forward", tuple(forward), hook="type filter hook forward priority filter; policy accept;"),
        NftChain(
            "input",
            (*(f"iifname {p} jump wl-to-host" for p in pats), f"jump {HEP_IN}"),
            hook="type filter hook input priority filter; policy accept;",
        ),
        # Host -> its own workloads is allowed in Calico (kubelet probes); ND to workloads needs it too.
        NftChain(
            "output",
            (*(f"oifname {p} accept" for p in pats), f"jump {HEP_OUT}"),
            hook="type filter hook output priority filter; policy accept;",
        ),
        NftChain("from-wl-dispatch", (f"iifname vmap @{FW_MAP}", f"{count(rid.verdict(unknown, False, wl))} drop")),
        NftChain("to-wl-dispatch", (f"oifname vmap @{TW_MAP}", f"{count(rid.verdict(unknown, True, wl))} drop")),
        NftChain("wl-to-host", tuple(wl_to_host)),
    ]
    return chains


def empty_model(
    prefixes: tuple[str, ...] = ("cali",), endpoint_to_host: str = "Drop", metadata: MetadataTarget | None = None
) -> TableModel:
    """The start-of-day table: dispatch with empty maps, so every workload interface is dropped (host
    interfaces are left alone until host endpoints are known)."""
    model = TableModel(maps={FW_MAP: {}, TW_MAP: {}})
    for chain in base_chains(prefixes, endpoint_to_host, metadata):
        model.chains[chain.name] = chain
    for chain in host_endpoint_chains([], prefixes, (), (), {}, {}):
        model.chains[chain.name] = chain
    model.counters = {n for c in model.chains.values() for n in c.counter_refs}
    return model


def render_model(state: DesiredState) -> TableModel:
    """The full table for a desired state (start of day, or a full reapply after drift)."""
    cfg = state.config
    model = empty_model(cfg.interface_prefixes, cfg.endpoint_to_host_action, cfg.metadata)
    for s in pool_sets(state.pools.values()):
        model.sets[s.name] = s
    model.maps.update(nat_maps(state.ip_nats))
    for chain in nat_chains(cfg):
        model.chains[chain.name] = chain
    for sid in sorted(state.ipsets):
        for s in ipset_sets(sid, state.ipsets[sid]):
            model.sets[s.name] = s
    chains: list[NftChain] = []
    for pid in sorted(state.policies):
        chains += policy_chains(state.policies[pid])
    for prof in sorted(state.profiles):
        chains += profile_chains(state.profiles[prof])
    for eid in sorted(state.endpoints):
        ep = state.endpoints[eid]
        chains += endpoint_chains(ep, state.policies, state.profiles)
        fw, tw = dispatch_entries(ep)
        model.maps[FW_MAP][fw[0]] = fw[1]
        model.maps[TW_MAP][tw[0]] = tw[1]
    chains += state_host_endpoint_chains(state)
    for chain in chains:
        model.chains[chain.name] = chain
        for ref in chain.set_refs:
            if ref not in model.sets:  # referenced before it exists: an empty set (matches nothing)
                model.sets[ref] = empty_set_for_name(ref)
    if cfg.flow_logs is not None:  # every verdict rule logs too (flow logs), through one named limit
        model.chains = {n: flowlog.logged(c, cfg.flow_logs) for n, c in model.chains.items()}
        model.limits[flowlog.LIMIT] = flowlog.limit_spec(cfg.flow_logs)
    model.counters = {n for c in model.chains.values() for n in c.counter_refs}
    return model

"""Hypothesis strategies for random Calico policy worlds: tiers, (global) network policies, profiles and the
labels of three workloads, as YAML documents Calico accepts, and flows between the workloads.

Source ports stay below the kernel's ephemeral range (32768+), so a rule on them matches no probe, exactly as
the explanation (which is given no source port) assumes.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from hypothesis import strategies as st

NAMES = ("a", "b", "c")
V4 = {"a": "198.18.1.2", "b": "198.18.1.3", "c": "198.18.1.4"}
V6 = {"a": "fd00:c411:0:1::2", "b": "fd00:c411:0:1::3", "c": "fd00:c411:0:1::4"}
NAMESPACES = {"a": "ns1", "b": "ns1", "c": "ns2"}
PORTS = {"tcp": (8080, 9090), "udp": (5353,)}
SELECTORS = ("all()", "app == 'x'", "app == 'y'", "has(role)", "role != 'fe'", "app in {'x', 'y'} && role == 'be'",
             "!has(app)")
NETS = ("198.18.1.2/32", "198.18.1.0/24", "198.18.1.4/31", "fd00:c411:0:1::3/128", "fd00:c411::/32", "10.0.0.0/8")


def labels() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({}, optional={"app": st.sampled_from(["x", "y"]),
                                               "role": st.sampled_from(["fe", "be"])})


def _ports(protocol: str | None) -> st.SearchStrategy[list[Any]]:
    if protocol not in ("TCP", "UDP"):
        return st.just([])
    return st.lists(st.sampled_from([8080, 9090, 5353, "8000:8100", "http", "dns"]), max_size=2, unique=True)


def nets_around(v4: dict[str, str], v6: dict[str, str]) -> tuple[str, ...]:
    """CIDRs shaped like NETS around other workload addresses (a /32, a wider net, a /31, a /128, a v6 /32, a
    net holding none of them), for worlds whose addresses come from IPAM."""
    def net(addr: str, plen: int) -> str:
        return str(ipaddress.ip_network(f"{addr}/{plen}", strict=False))
    return (f"{v4['a']}/32", net(v4["a"], 24), net(v4["c"], 31), f"{v6['b']}/128", net(v6["b"], 32), "10.0.0.0/8")


@st.composite
def entity(draw: st.DrawFn, protocol: str | None, source: bool, nets: tuple[str, ...] = NETS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["selector"] = draw(st.sampled_from(SELECTORS))
    if draw(st.integers(0, 4)) == 0:
        out["notSelector"] = draw(st.sampled_from(SELECTORS[1:]))
    if draw(st.integers(0, 3)) == 0:
        out["nets"] = draw(st.lists(st.sampled_from(nets), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 4)) == 0:
        out["notNets"] = draw(st.lists(st.sampled_from(nets), min_size=1, max_size=2, unique=True))
    if source:
        if protocol in ("TCP", "UDP") and draw(st.integers(0, 5)) == 0:
            out[draw(st.sampled_from(["ports", "notPorts"]))] = ["1:1000"]  # never a probe's ephemeral port
    else:
        ports = draw(_ports(protocol))
        if ports:
            out["ports"] = ports
        not_ports = draw(_ports(protocol)) if draw(st.integers(0, 3)) == 0 else []
        if not_ports:
            out["notPorts"] = not_ports
    return out


@st.composite
def rule(draw: st.DrawFn, nets: tuple[str, ...] = NETS) -> dict[str, Any]:
    action = draw(st.sampled_from(["Allow", "Allow", "Deny", "Pass", "Log"]))
    protocol = draw(st.sampled_from([None, None, "TCP", "UDP", "ICMP", "ICMPv6", 6, 17]))
    r: dict[str, Any] = {"action": action}
    proto_name = {6: "TCP", 17: "UDP"}.get(protocol, protocol) if protocol is not None else None
    if protocol is not None:
        r["protocol"] = protocol
    elif draw(st.integers(0, 4)) == 0:
        r["notProtocol"] = draw(st.sampled_from(["TCP", "UDP", "ICMP"]))
    if draw(st.integers(0, 4)) == 0:
        r["ipVersion"] = draw(st.sampled_from([4, 6]))
    if proto_name in ("ICMP", "ICMPv6"):
        echo = 8 if proto_name == "ICMP" else 128
        if draw(st.booleans()):
            icmp = {"type": draw(st.sampled_from([echo, 0]))}
            if draw(st.booleans()):
                icmp["code"] = draw(st.sampled_from([0, 1]))
            r[draw(st.sampled_from(["icmp", "notICMP"]))] = icmp
    src, dst = draw(entity(proto_name, True, nets)), draw(entity(proto_name, False, nets))
    if src:
        r["source"] = src
    if dst:
        r["destination"] = dst
    return r


@st.composite
def world_docs(draw: st.DrawFn, nets: tuple[str, ...] = NETS
               ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]], list[dict[str, Any]]]:
    """(labels per workload, profiles per workload, the policy documents)."""
    wl_labels = {n: draw(labels()) for n in NAMES}
    docs: list[dict[str, Any]] = []
    tiers = ["default"]
    if draw(st.booleans()):
        tiers.insert(0, "t1")
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": "t1"},
                     "spec": {"order": 10, "defaultAction": draw(st.sampled_from(["Deny", "Pass"]))}})
    for i in range(draw(st.integers(1, 4))):
        tier = draw(st.sampled_from(tiers))
        name = f"p{i}" if tier == "default" else f"{tier}.p{i}"
        spec: dict[str, Any] = {"tier": tier, "order": draw(st.integers(1, 5)) * 10,
                                "selector": draw(st.sampled_from(SELECTORS))}
        ingress, egress = draw(st.lists(rule(nets), max_size=3)), draw(st.lists(rule(nets), max_size=3))
        if ingress:
            spec["ingress"] = ingress
        if egress:
            spec["egress"] = egress
        if draw(st.integers(0, 3)) == 0:
            spec["types"] = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
        if draw(st.booleans()):
            docs.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                         "metadata": {"name": name}, "spec": spec})
        else:
            docs.append({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                         "metadata": {"name": name, "namespace": draw(st.sampled_from(["ns1", "ns2"]))},
                         "spec": spec})
    profiles: dict[str, list[str]] = {}
    for n in NAMES:
        profiles[n] = draw(st.lists(st.sampled_from(["open", "prof1", "prof2"]), max_size=2, unique=True))
    docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": "open"},
                 "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}})
    for p in ("prof1", "prof2"):
        docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": p},
                     "spec": {"ingress": draw(st.lists(rule(nets), max_size=2)),
                              "egress": draw(st.lists(rule(nets), max_size=2))}})
    return wl_labels, profiles, docs


FLOWS = [(s, d, proto, port, v6) for s in NAMES for d in NAMES if s != d
         for proto, port in (("tcp", 8080), ("tcp", 9090), ("udp", 5353), ("icmp", None)) for v6 in (False, True)]


def flows() -> st.SearchStrategy[list[tuple[str, str, str, int | None, bool]]]:
    return st.lists(st.sampled_from(FLOWS), min_size=4, max_size=6, unique=True)


def workload_docs(ifaces: dict[str, str], wl_labels: dict[str, dict[str, str]],
                  profiles: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [{"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
             "metadata": {"name": n, "namespace": NAMESPACES[n], "labels": wl_labels[n]},
             "spec": {"node": "h1", "interfaceName": ifaces[n], "ipNetworks": [f"{V4[n]}/32", f"{V6[n]}/128"],
                      "profiles": profiles[n],
                      "ports": [{"name": "http", "protocol": "TCP", "port": 8080},
                                {"name": "dns", "protocol": "UDP", "port": 5353}]}} for n in NAMES]


def as_yaml(docs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(d) for d in docs)  # JSON is YAML

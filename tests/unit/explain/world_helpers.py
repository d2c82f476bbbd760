"""Snapshots built from YAML, for explanation tests without a datastore."""

from __future__ import annotations

from calico.datastore.store import encode, key_of
from calico.explain.explain import explain
from calico.explain.flow import parse_headers, parse_host_endpoint, parse_party
from calico.explain.snapshot import Snapshot
from calico.explain.trace import Explanation
from calico.resources import load_documents


def snapshot(*yaml_docs: str) -> Snapshot:
    values = {}
    for res in load_documents("\n---\n".join(yaml_docs)):
        values[key_of(res).path()] = encode(res)
    return Snapshot(7, values)


def run(snap: Snapshot, src: str, dst: str, protocol: str = "tcp", port: int | None = 80,
        src_port: int | None = None, icmp_type: int | None = None, icmp_code: int | None = None,
        via: str | None = None, leaves_via: str | None = None) -> Explanation:
    if protocol.lower() not in ("tcp", "udp", "sctp", "6", "17", "132"):
        port = None if port == 80 else port
    return explain(snap, parse_party(src, "--src"), parse_party(dst, "--dst"),
                   parse_headers(protocol, port, src_port, icmp_type, icmp_code),
                   parse_host_endpoint(via, "--via"), parse_host_endpoint(leaves_via, "--leaves-via"))


def wep(name: str, ip: str, node: str = "h1", labels: str = "{}", ns: str = "ns1", extra: str = "") -> str:
    return f"""
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  node: {node}
  interfaceName: cali{name}
  ipNetworks: [{ip}]
{extra}"""


def gnp(name: str, spec: str) -> str:
    """A GlobalNetworkPolicy; `spec` is its spec's lines, indented by two."""
    return f"""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {name}}}
spec:
{spec}"""


OPEN_PROFILE = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec: {egress: [{action: Allow}], ingress: [{action: Allow}]}
"""
HOST_ENDPOINT = """
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h1-eth0, labels: {role: host}}
spec: {node: h1, interfaceName: eth0, expectedIPs: [198.19.1.1]}
"""

"""Agreement for host endpoints: `explain`'s verdict equals the kernel's through untracked (doNotTrack), preDNAT,
normal and applyOnForward policy, on the nftables and iptables (nft flavour) backends.

One fixed world: a workload `a`, two external clients each behind its own host uplink, a host endpoint on each
uplink (`up1`, `up2`), and policies of every kind. The documents go through Felix's calculation graph (this
host "h1") into the backend in the host namespace; then each flow of the table below (to the host through
`up1`, forwarded from `up1` to the workload, forwarded from `up1` out of `up2`, from the workload out of
`up2`; between the workload and its own host) is explained and probed with real TCP, and the two must agree (the expected verdict is checked too,
so a scenario cannot silently stop testing its stage).
Run: `flock /tmp/calico-netns.lock .venv/bin/python -m pytest tests/dataplane/test_explain_host_endpoints.py`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from calico.datastore.store import encode, key_of
from calico.explain.explain import explain
from calico.explain.flow import parse_headers, parse_host_endpoint, parse_party
from calico.explain.snapshot import Snapshot
from calico.resources import load_documents
from tests.dataplane.test_explain_agreement import program
from tests.helpers.netns import External, World

pytestmark = pytest.mark.heavy

A4, A6 = "198.18.1.2", "fd00:c411:0:1::2"
TIMEOUT = 0.5


def _docs(a_iface: str, up1: External, up2: External) -> str:
    def hep(name: str, ext: External) -> str:
        return f"""
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: {name}, labels: {{role: {name}}}}}
spec: {{node: h1, interfaceName: {ext.host_iface}, expectedIPs: [{ext.host_ip}]}}"""

    def gnp(name: str, selector: str, spec: str) -> str:
        return f"""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {name}}}
spec:
  selector: role == '{selector}'
{spec}"""

    return "\n---\n".join([
        hep("up1", up1), hep("up2", up2),
        """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: allow-all}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}""",
        f"""
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: a, namespace: ns1}}
spec: {{node: h1, interfaceName: {a_iface}, ipNetworks: [{A4}/32, {A6}/128], profiles: [allow-all]}}""",
        gnp("dnt", "up1", """  doNotTrack: true
  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [9090]}}
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
  egress:
  - {action: Allow, protocol: TCP, source: {ports: [8080]}}"""),
        gnp("pd", "up1", """  preDNAT: true
  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [6060]}}
  - {action: Allow, protocol: TCP, destination: {ports: [5050]}}"""),
        gnp("fwd-in", "up1", """  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [4040]}}
  - {action: Allow, protocol: TCP, destination: {ports: [7070, 8081, 8082, 8083]}}"""),
        gnp("fwd-out", "up2", """  applyOnForward: true
  egress:
  - {action: Deny, protocol: TCP, destination: {ports: [8082]}}
  - {action: Allow}"""),
    ])


# (source, destination, --via, --leaves-via, port, expected verdict, the stage that decides: kind / verdict)
# "ext"/"ext2": the external clients; "up1": the host's address on up1's link; "a": the workload.
FLOWS = [
    ("ext", "up1", None, None, 8080, "allow", "untracked"),  # untracked Allow: normal policy skipped
    ("ext", "up1", None, None, 9090, "deny", "untracked"),
    ("ext", "up1", None, None, 6060, "deny", "preDNAT"),
    ("ext", "up1", None, None, 5050, "allow", "preDNAT"),  # preDNAT Allow: normal policy skipped
    ("ext", "up1", None, None, 7070, "allow", "normal"),  # fwd-in applies on forward AND to the host
    ("ext", "up1", None, None, 7071, "deny", "normal"),  # fwd-in's tier: default Deny
    ("ext", "up1", None, None, 22, "allow", "normal"),  # failsafe
    ("ext", "a", "up1", None, 9090, "deny", "untracked"),
    ("ext", "a", "up1", None, 6060, "deny", "preDNAT"),
    ("ext", "a", "up1", None, 5050, "allow", "preDNAT"),  # forward stage skipped, the workload allows
    ("ext", "a", "up1", None, 4040, "deny", "forward"),
    ("ext", "a", "up1", None, 4041, "deny", "forward"),  # applyOnForward tier: default Deny
    ("ext", "a", "up1", None, 8081, "allow", "forward"),
    ("ext", "ext2", "up1", "up2", 8081, "allow", "forward"),
    ("ext", "ext2", "up1", "up2", 8082, "deny", "forward"),  # fwd-out denies on the way out
    ("a", "ext2", None, "up2", 8083, "allow", "forward"),
    ("a", "ext2", None, "up2", 8082, "deny", "forward"),
    ("a", "up1", None, None, 8080, "deny", "to host"),  # its egress allows; DefaultEndpointToHostAction Drop
    ("a", "up1", None, None, 53, "allow", "to host"),  # DNS to the host: accepted before any policy
    ("up1", "a", None, None, 4040, "allow", "from host"),  # the host to its own workload: no policy
]


@pytest.mark.parametrize("kind", ["nftables", "iptables-nft"])
def test_explain_agrees_with_the_kernel_on_host_endpoints(world: World, kind: str) -> None:
    a = world.add_workload("a", A4, A6)
    up1 = world.add_external("ext", "198.18.200.1", "198.18.200.2")
    up2 = world.add_external("ext2", "198.18.201.1", "198.18.201.2")
    snapshot = Snapshot(1, {key_of(r).path(): encode(r) for r in load_documents(_docs(a.iface, up1, up2))})
    program(world, kind, snapshot)
    address = {"ext": up1.ipv4, "ext2": up2.ipv4, "up1": up1.host_ip, "a": A4}
    source = {"ext": up1.netns, "a": a.netns, "up1": world.host}
    failures: list[str] = []
    for src, dst, via, leaves, port, expected, deciding in FLOWS:
        told = explain(snapshot, parse_party(address[src], "--src"), parse_party(address[dst], "--dst"),
                       parse_headers("tcp", port, None, None, None),
                       parse_host_endpoint(via and f"hep:{via}", "--via"),
                       parse_host_endpoint(leaves and f"hep:{leaves}", "--leaves-via"))
        kernel = world.probe(source[src], address[dst], "tcp", port, timeout=TIMEOUT)
        decided = _deciding(told.to_json())
        if (told.verdict == "allow") != kernel or told.verdict != expected or decided != deciding:
            failures.append(f"{kind}: {src} -> {dst}:{port} via {via} leaving via {leaves}: explain says "
                            f"{told.verdict} ({decided}: {told.enforced.reason}), the kernel "
                            f"{'passed' if kernel else 'dropped'} it, expected {expected} ({deciding})\n"
                            f"{json.dumps(told.to_json()['stages'], indent=1)}")
    assert not failures, "\n".join(failures)


def _deciding(out: dict[str, Any]) -> str:
    """The kind of the stage that decided: the one that denied, else the first that allowed by itself."""
    stages = out["stages"]
    if out["verdict"] == "deny":
        return str(stages[-1]["kind"])
    hep_stages = [s for s in stages if s["endpoint"].startswith("hep:") and s["verdict"] == "allow"
                  and s["decided"] != "hep_allowed" and "left alone" not in s["reason"]]
    return str((hep_stages or stages)[0]["kind"])

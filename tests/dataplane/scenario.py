"""The known-traffic scenario the counter and flow log tests share, and a real calico-felix to run it under.

Workloads a, b, c and d in a `World` (tests/helpers/netns.py); a also holds an address that is not its own
(SPOOF, routed back to it so the reverse-path filter lets it through to the anti-spoofing rule); every
workload drops its own MLD reports before they leave it, so nothing but the test's traffic is counted or logged.
`datastore_docs` are the same policies as resources: a's egress allowed by policy `out` (UDP; rule 1: TCP), b's
ingress by policy `web` (rule 0 allows UDP 8080, rule 1 denies UDP 9090, rule 2 allows TCP 8080; anything else:
the tier's default drop), c with no ingress policy and a profile without ingress rules (profile fall-through), d
unknown to Felix (fail closed). `send` sends UDP datagrams, each from a fresh source port (a new flow);
`felix_in` runs calico-felix in the world's host namespace on an embedded datastore holding those documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.store import ResourceStore
from calico.lab import daemons
from calico.resources import load_documents
from tests.dataplane.test_nft_policy import V4, V6
from tests.helpers.netns import World, sh

PAYLOAD = 50
V4_BYTES = 20 + 8 + PAYLOAD  # IPv4 header + UDP header + payload: what the filter hooks count
SPOOF = "198.18.1.99"
D_V4, D_V6 = "198.18.1.5", "fd00:c411:0:1::5"
HOST = "cnt-h1"
METRICS_PORT = 9091
HEALTH_PORT = 9099

_SENDER = r"""
import socket, sys
dst, port, count, size, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
for _ in range(count):
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))  # a fresh source port: a new flow each time
    s.sendto(b"x" * size, (dst, port))
    s.close()
"""


def send(world: World, src: str, dst_ip: str, port: int, count: int, src_ip: str = "") -> None:
    ns = world.workloads[src].netns
    sh("ip", "netns", "exec", ns, sys.executable, "-c", _SENDER, dst_ip, str(port), str(count), str(PAYLOAD),
       src_ip or ("::" if ":" in dst_ip else "0.0.0.0"))


def quiet(world: World, name: str) -> None:
    """Drop the workload's own MLD reports before they leave it (they would be counted as spoofed)."""
    ns = world.workloads[name].netns
    text = ("table inet quiet {\n chain out {\n type filter hook output priority 0; policy accept;\n"
            " icmpv6 type { mld-listener-report, mld2-listener-report, mld-listener-done } drop\n }\n}\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=text, text=True, check=True, timeout=10)


def build(world: World) -> World:
    for name, v4, v6 in (("a", V4["a"], V6["a"]), ("b", V4["b"], V6["b"]), ("c", V4["c"], V6["c"]),
                         ("d", D_V4, D_V6)):
        world.add_workload(name, v4, v6)
        quiet(world, name)
    world.add_extra_address(world.workloads["a"], SPOOF, host_route=True)
    return world


def datastore_docs(world: World) -> str:
    def wep(name: str) -> str:
        wl = world.workloads[name]
        return f"""
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {HOST}-k8s-{name}-eth0, namespace: ns1, labels: {{app: {name}}}}}
spec: {{node: {HOST}, orchestrator: k8s, pod: {name}, endpoint: eth0, interfaceName: {wl.iface},
       ipNetworks: [{wl.ipv4}/32, {wl.ipv6}/128], profiles: [no-ingress]}}
---"""
    return "\n".join(wep(n) for n in "abc") + PROFILE_AND_OUT + WEB_POLICY


PROFILE_AND_OUT = """
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: no-ingress}
spec: {}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: out, namespace: ns1}
spec:
  selector: app == 'a'
  types: [Egress]
  egress: [{action: Allow, protocol: UDP}, {action: Allow, protocol: TCP}]
---"""
WEB_POLICY = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: ns1}
spec:
  selector: app == 'b'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: UDP, destination: {ports: [8080]}}
  - {action: Deny, protocol: UDP, destination: {ports: [9090]}}
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
"""


def in_host(world: World, code: str, timeout: float = 20) -> str:
    """Python code run inside the host namespace (where Felix serves metrics and health); its stdout."""
    return sh("ip", "netns", "exec", world.host, sys.executable, "-c", code, timeout=timeout).stdout


def scrape(world: World) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Felix's /metrics: (name, labels) -> value."""
    text = in_host(world, "import urllib.request; print(urllib.request.urlopen("
                          f"'http://127.0.0.1:{METRICS_PORT}/metrics').read().decode())")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@contextlib.contextmanager
def felix_in(world: World, backend: str, env: Callable[[Path], dict[str, str]] | None = None,
             extra_docs: str = "") -> Iterator[Path]:
    """calico-felix in the world's host namespace (ready when this yields the run's temporary directory, which
    `env` may use for Felix's settings), on an embedded datastore holding `datastore_docs` (and `extra_docs`);
    stopped by its PID and the directory removed afterwards. (For synchronous tests.)"""
    tmp = Path(tempfile.mkdtemp(prefix="cnt-felix-"))
    db = str(tmp / "calico.db")

    async def fill() -> None:
        kv = await EmbeddedKV.open(db)
        store = ResourceStore(kv)
        for res in load_documents(datastore_docs(world) + ("\n---\n" + extra_docs if extra_docs else "")):
            await store.create(res)
        await kv.close()

    asyncio.run(fill())
    full_env = {**os.environ, "DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": db, "FELIX_FELIXHOSTNAME": HOST,
                "FELIX_HEALTHENABLED": "true", "FELIX_PROMETHEUSMETRICSENABLED": "true",
                "FELIX_PROMETHEUSMETRICSHOST": "127.0.0.1", "FELIX_DATAPLANEBACKEND": backend,
                "FELIX_MTUFILEPATH": str(tmp / "mtu"), **(env(tmp) if env else {})}
    pid = daemons.spawn(["ip", "netns", "exec", world.host, str(Path(sys.executable).parent / "calico-felix")],
                        tmp / "felix.log", full_env)
    try:
        daemons.wait_felix_ready(world.host, HEALTH_PORT, 30)
        yield tmp
    finally:
        daemons.stop(pid, "calico-felix", timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)

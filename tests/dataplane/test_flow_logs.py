"""Flow logs end to end: a real calico-felix (nftables, iptables) with flow logs on, known traffic between
workload namespaces (tests/dataplane/scenario.py), and the exact records it writes: one per flow (every UDP
datagram comes from a fresh source port), naming both ends, the verdict and the policy at each stage, with
conntrack's counts for an allowed TCP connection; the same records on the unix socket; `calicoctl flows`
filters them. Then a flood of denied packets: Felix stays live and ready, programs a policy change promptly,
and counts what it could not log instead of queueing it. Run under `flock /tmp/calico-netns.lock`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from calico.flowlogs.outputs import read_lines
from calico.flowlogs.records import FlowRecord, TraceStep, from_json
from tests.dataplane.scenario import (
    D_V4,
    HEALTH_PORT,
    SPOOF,
    V4_BYTES,
    WEB_POLICY,
    build,
    felix_in,
    in_host,
    scrape,
    send,
)
from tests.dataplane.test_nft_policy import V4, V6
from tests.helpers.netns import World, sh

pytestmark = pytest.mark.heavy

BACKENDS = ["nftables", "iptables"]
OUT = TraceStep("egress", "policy", "default", "ns1/out", 0, "allow")
OUT_TCP = TraceStep("egress", "policy", "default", "ns1/out", 1, "allow")


def ingress(kind: str, policy: str = "", rule: int | None = None, action: str = "deny") -> TraceStep:
    return TraceStep("ingress", kind, "default" if kind in ("policy", "tier_default") else "", policy, rule, action)


@pytest.fixture
def wls(world: World) -> World:
    return build(world)


def records(directory: Path) -> list[FlowRecord]:
    return [from_json(line) for line in read_lines(str(directory))]


def wait_for(directory: Path, count: int, timeout: float = 15.0) -> list[FlowRecord]:
    deadline = time.monotonic() + timeout
    while True:
        got = records(directory)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


_TCP = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 8080)); srv.listen(1); srv.settimeout(10)
print("ready", flush=True)
conn, _ = srv.accept(); conn.settimeout(10)
data = b""
while len(data) < 3000:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
conn.sendall(b"y" * 5000); conn.close()
"""


_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 8080), timeout=10)
s.sendall(b"x" * 3000)
n = 0
while n < 5000:
    chunk = s.recv(65536)
    if not chunk:
        break
    n += len(chunk)
s.close()
assert n == 5000, n
"""


def tcp_exchange(world: World) -> None:
    """One TCP connection a -> b:8080: 3000 bytes there, 5000 back."""
    server = subprocess.Popen(["ip", "netns", "exec", world.workloads["b"].netns, sys.executable, "-c", _TCP,
                               V4["b"]], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        sh("ip", "netns", "exec", world.workloads["a"].netns, sys.executable, "-c", _CLIENT, V4["b"])
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


class SocketReader:
    """Reads the records Felix streams on its socket, in the background."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.sock.connect(path)
                break
            except OSError:
                assert time.monotonic() < deadline, f"{path} never accepted"
                time.sleep(0.1)
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = b""
        while chunk := self.sock.recv(65536):
            buf += chunk
            *done, buf = buf.split(b"\n")
            self.lines += [d.decode() for d in done if d]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_traffic_gives_exact_records_naming_the_deciding_policy(wls: World, backend: str) -> None:
    with felix_in(wls, backend, env=flow_env) as tmp:
        reader = SocketReader(str(tmp / "flows.sock"))
        try:
            n = 2
            send(wls, "a", V4["b"], 8080, n)  # web rule 0: allow
            send(wls, "a", V4["b"], 9090, n + 1)  # web rule 1: deny
            send(wls, "a", V4["b"], 7070, n + 2)  # the tier's default
            send(wls, "a", V4["c"], 8080, n + 3)  # profile fall-through
            send(wls, "a", V4["b"], 8080, 1, src_ip=SPOOF)  # anti-spoofing
            send(wls, "d", V4["b"], 8080, 1)  # unknown interface: fail closed
            send(wls, "a", V6["b"], 9090, 1)  # IPv6, denied by web rule 1
            tcp_exchange(wls)
            wait_for(tmp / "flows", 4 * n + 6 + 4)
            time.sleep(2.5)  # two more flushes: nothing else may turn up, and the TCP counts are final
            got = records(tmp / "flows")
            ctl = str(Path(sys.executable).parent / "calicoctl")
            filtered = sh(ctl, "flows", "--dir", str(tmp / "flows"), "--action", "deny", "--policy", "ns1/web",
                          "-o", "json").stdout.splitlines()
            table = sh(ctl, "flows", "--dir", str(tmp / "flows"), "--endpoint", "ns1/c").stdout
        finally:
            reader.close()

    by_kind = Counter((r.dest_ip, r.dest_port, r.action, r.policies) for r in got if r.proto == "udp")
    assert by_kind == {
        (V4["b"], 8080, "allow", (OUT, ingress("policy", "ns1/web", 0, "allow"))): n,
        (V4["b"], 9090, "deny", (OUT, ingress("policy", "ns1/web", 1))): n + 1,
        (V4["b"], 7070, "deny", (OUT, ingress("tier_default"))): n + 2,
        (V4["c"], 8080, "deny", (OUT, ingress("profile_fallthrough"))): n + 3,
        (V4["b"], 8080, "deny", (TraceStep("egress", "anti_spoofing", "", "", None, "deny"),)): 1,
        (V4["b"], 8080, "deny", (TraceStep("egress", "fail_closed", "", "", None, "deny"),)): 1,
        (V6["b"], 9090, "deny", (OUT, ingress("policy", "ns1/web", 1))): 1,
    }, got
    for r in got:
        if r.proto != "udp":
            continue
        # One datagram per flow: exact counts (allowed flows from conntrack, denied ones from the log).
        assert (r.packets, r.bytes) == (1, V4_BYTES + (20 if ":" in r.dest_ip else 0)), r
        assert r.counts_from == ("conntrack" if r.action == "allow" else "log"), r
        unknown = r.source_ip in (SPOOF, D_V4)
        assert (r.source.type, r.source.namespace, r.source.name) == (("net", "", "") if unknown else ("wep", "ns1", "a"))
        assert (r.dest.type, r.dest.namespace, r.dest.name) == ("wep", "ns1", "c" if r.dest_ip == V4["c"] else "b")
        assert r.dest.labels["app"] == r.dest.name and r.host == "cnt-h1"
    # The TCP connection: one flow (a flush in the middle of it reports the rest in the next interval).
    tcp = [r for r in got if r.proto == "tcp"]
    assert len({(r.source_port, r.dest_port) for r in tcp}) == 1
    assert all(r.action == "allow" and r.counts_from == "conntrack" for r in tcp)
    assert all(r.policies == (OUT_TCP, ingress("policy", "ns1/web", 2, "allow")) for r in tcp)
    assert sum(r.bytes for r in tcp) > 3000 and sum(r.reply_bytes for r in tcp) > 5000
    assert sum(r.reply_packets for r in tcp) > 1

    # The socket streamed the same records the file holds.
    assert sorted(reader.lines) == sorted(r.to_json() for r in got)
    # calicoctl flows: the filters.
    assert sorted(from_json(line).dest_port for line in filtered) == [9090] * (n + 2)
    assert "ingress profile_fallthrough (deny)" in table and table.count("ns1/c") == n + 3


def flow_env(tmp: Path) -> dict[str, str]:
    return {"FELIX_FLOWLOGSFILEENABLED": "true", "FELIX_FLOWLOGSFILEDIRECTORY": str(tmp / "flows"),
            "FELIX_FLOWLOGSSOCKETPATH": str(tmp / "flows.sock"), "FELIX_FLOWLOGSFLUSHINTERVAL": "1"}


STAGED_DENY_WEB = """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: web, namespace: ns1}
spec:
  stagedAction: Set
  selector: app == 'b'
  types: [Ingress]
  ingress: [{action: Deny}]
"""


def test_a_staged_deny_is_a_pending_verdict_and_drops_nothing(wls: World) -> None:
    with felix_in(wls, "nftables", env=flow_env, extra_docs=STAGED_DENY_WEB) as tmp:
        send(wls, "a", V4["b"], 8080, 2)  # allowed by ns1/web rule 0; the staged web would deny it
        send(wls, "a", V4["c"], 8080, 1)  # not b: the staged policy does not select c
        got = wait_for(tmp / "flows", 3)
        table = sh(str(Path(sys.executable).parent / "calicoctl"), "flows", "--dir", str(tmp / "flows")).stdout
    to_b = [r for r in got if r.dest_ip == V4["b"]]
    assert len(to_b) == 2 and all(r.action == "allow" and r.counts_from == "conntrack" for r in to_b), got
    assert all(r.pending_action == "deny" for r in to_b)
    assert all(r.pending_policies == (OUT, ingress("policy", "ns1/web", 0, "deny")) for r in to_b)
    [to_c] = [r for r in got if r.dest_ip == V4["c"]]
    assert (to_c.action, to_c.pending_action) == ("deny", "deny")
    assert to_c.pending_policies == (OUT, ingress("profile_fallthrough"))
    assert "pending deny" in table


# --- a flood of denied packets ---------------------------------------------------------------------------------

_FLOOD = r"""
import socket, sys, time
dst, seconds, limit = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, sent, end = b"f" * 32, 0, time.monotonic() + seconds
while sent < limit and time.monotonic() < end:
    for _ in range(1000):
        s.sendto(payload, (dst, 9090))
    sent += 1000
print(sent)
"""

WEB_PLUS = WEB_POLICY + "  - {action: Allow, protocol: UDP, destination: {ports: [7070]}}\n"


def health(world: World) -> tuple[int, int]:
    base = f"http://127.0.0.1:{HEALTH_PORT}"
    code = ("import urllib.request, urllib.error\n"
            "def get(p):\n"
            f"    try: return urllib.request.urlopen('{base}' + p, timeout=2).status\n"
            "    except urllib.error.HTTPError as e: return e.code\n"
            "print(get('/liveness'), get('/readiness'))")
    live, ready = in_host(world, code).split()
    return int(live), int(ready)


def programmed(world: World, backend: str, identity: str) -> bool:
    argv = ["nft", "list", "counters", "table", "inet", "calico"] if backend == "nftables" else ["iptables-save"]
    return identity in sh("ip", "netns", "exec", world.host, *argv).stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_denied_flood_leaves_felix_healthy_and_programming(wls: World, backend: str) -> None:
    def env(tmp: Path) -> dict[str, str]:
        # The kernel logs every packet; the collector takes 2,000 a second and sheds the rest.
        return {**flow_env(tmp), "FELIX_FLOWLOGSRATELIMIT": "1000000", "FELIX_FLOWLOGSRATEBURST": "1000000",
                "FELIX_FLOWLOGSMAXEVENTSPERSECOND": "2000"}

    new_rule = "PIA//3/default/ns1/web"
    with felix_in(wls, backend, env=env) as tmp:
        flood = subprocess.Popen(["ip", "netns", "exec", wls.workloads["a"].netns, sys.executable, "-c", _FLOOD,
                                  V4["b"], "4", "3000000"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            checks = [health(wls) for _ in range(3)]
            ctl = str(Path(sys.executable).parent / "calicoctl")
            started = time.monotonic()
            subprocess.run([ctl, "apply", "-f", "-"], input=WEB_PLUS, text=True, check=True, timeout=20,
                           env={"DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": str(tmp / "calico.db"),
                                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            while not programmed(wls, backend, new_rule):
                assert time.monotonic() - started < 5, "policy change not programmed during the flood"
                time.sleep(0.01)
            latency = time.monotonic() - started
            checks += [health(wls) for _ in range(3)]
            assert flood.poll() is None, "the flood ended before the checks: they proved nothing"
        finally:
            out, _ = flood.communicate(timeout=30)
        sent = int(out.strip())
        checks.append(health(wls))
        time.sleep(2.5)
        m = scrape(wls)
        got = records(tmp / "flows")

    assert all(c == (200, 200) for c in checks), checks
    assert latency < 2.0, latency
    flood_records = [r for r in got if r.dest_port == 9090 and r.action == "deny"]
    logged = sum(r.packets for r in flood_records)
    assert flood_records and 0 < logged < sent  # logged what it could, shed the rest
    shed = m[("felix_flowlogs_read_pauses_total", frozenset())] + m[("felix_flowlogs_kernel_overflows_total",
                                                                      frozenset())]
    assert shed > 0
    assert m[("felix_flowlogs_events_total", frozenset())] <= 2000 * 8  # never more than its budget a second
    print(f"\n{backend}: flood {sent} packets, logged {logged}, policy change programmed in {latency * 1000:.0f} ms")

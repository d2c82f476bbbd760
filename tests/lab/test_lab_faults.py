"""Faults against the full stack: felix killed mid-flow, the kernel ruleset tampered with, bad data in the store.

One lab per dataplane (refresh interval 2 s, so read-back repair is quick), shared by the tests of the module.
Every traffic loop is bounded (fixed count, per-attempt timeout); every process is stopped by the handle or PID
this module got for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from calico.datastore.config import from_env, open_kv
from calico.datastore.keys import RESOURCE_PREFIX
from tests.lab.conftest import Lab, LabFactory

pytestmark = pytest.mark.heavy

REFRESH = 2.0
CONVERGE = 10.0

POLICY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: apps-egress
spec:
  selector: has(app)
  types:
  - Egress
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: srv-from-cli
  namespace: default
spec:
  selector: app == 'srv'
  types:
  - Ingress
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'cli'
    destination:
      ports:
      - 8080
  - action: Allow
    protocol: UDP
    source:
      selector: app == 'cli'
    destination:
      ports:
      - 8081
"""

# Selects srv2 only; the bad-data test overwrites it with rules that cannot be rendered.
POLICY2 = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: srv2-from-cli
  namespace: default
spec:
  selector: app == 'srv2'
  types:
  - Ingress
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'cli'
    destination:
      ports:
      - 8080
"""


@pytest.fixture(scope="module", params=["nftables", "iptables"])
def rig(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Iterator[Lab]:
    """srv accepts tcp:8080 and udp:8081 from cli; intruder is denied. Down before the next dataplane starts."""
    lab = lab_factory(request.param, "embedded", "--refresh-interval", str(REFRESH))
    try:
        lab.add_workload("srv", "app=srv")
        lab.add_workload("cli", "app=cli")
        lab.add_workload("intruder", "app=intruder")
        lab.apply(POLICY)
        lab.wait_for(lambda: lab.can("cli", "srv"), CONVERGE, "policy in force")
        yield lab
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None)


def enforced(lab: Lab) -> bool:
    """The whole policy holds: allowed passes (both protocols, both families), denied is blocked."""
    return (lab.can("cli", "srv") and lab.can("cli", "srv", proto="udp", port=8081)
            and lab.can("cli", "srv", ipv6=True) and not lab.can("intruder", "srv", timeout=0.3))


def pid_alive(pid: int) -> bool:
    try:
        return "calico-node\x00-felix" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


# --- restart -----------------------------------------------------------------------------------------------------


def test_flows_survive_felix_kill_and_restart(rig: Lab) -> None:
    rig.listen("srv", 8080, "tcp", seconds=25)
    rig.listen("srv", 8081, "udp", seconds=25)
    # ~7.5 s of new connections, 6-7 per second per flow; the kill and restart happen inside that window.
    tcp = rig.flow("cli", "srv", 8080, "tcp", count=50, interval=0.15, timeout=0.5)
    udp = rig.flow("cli", "srv", 8081, "udp", count=50, interval=0.15, timeout=0.5)
    denied = rig.flow("intruder", "srv", 8080, "tcp", count=25, interval=0.3, timeout=0.25)
    time.sleep(1.0)
    old = rig.felix_pid()
    assert pid_alive(old)
    os.killpg(old, signal.SIGKILL)  # felix runs in its own session: the group is felix and its children only
    rig.wait_for(lambda: not pid_alive(old), 5, "felix gone after SIGKILL", interval=0.05)
    time.sleep(1.0)  # the dataplane runs on its own for a while
    rig.cli("felix", "restart", "--host", "h1")
    assert tcp.proc.poll() is None and udp.proc.poll() is None, "flows ended before the restart: window too short"
    new = rig.felix_pid()
    assert new != old and pid_alive(new)
    tcp_r, udp_r, denied_r = tcp.results(), udp.results(), denied.results()
    rig.stop_spawned()  # the listeners hold srv's ports; probes below bring their own
    assert len(tcp_r) == 50 and len(udp_r) == 50 and len(denied_r) == 25
    assert [r for r in tcp_r if not r["ok"]] == [], "tcp attempts lost across the felix restart"
    assert [r for r in udp_r if not r["ok"]] == [], "udp round trips lost across the felix restart"
    assert [r for r in denied_r if r["ok"]] == [], "a denied flow got through during the felix restart"
    # The restarted felix is the one in charge: it still follows the datastore.
    rig.ctl("label", "workloadendpoint", rig.state.workloads["intruder"].endpoint_name, "app=cli", "--overwrite",
            "-n", "default")
    rig.wait_for(lambda: rig.can("intruder", "srv"), CONVERGE, "new felix applies a relabel")
    rig.ctl("label", "workloadendpoint", rig.state.workloads["intruder"].endpoint_name, "app=intruder",
            "--overwrite", "-n", "default")
    rig.wait_for(lambda: not rig.can("intruder", "srv"), CONVERGE, "intruder blocked again")
    # The CLI's own crash-restart path.
    rig.cli("felix", "restart", "--host", "h1", "--kill")
    assert not pid_alive(new) and pid_alive(rig.felix_pid())
    assert enforced(rig)


# --- tamper ------------------------------------------------------------------------------------------------------


def _add_bystanders(lab: Lab) -> None:
    """Someone else's rules in the host namespace, which Calico must leave alone."""
    if lab.dataplane == "nftables":
        lab.in_host("nft", "add table inet bystander")
        lab.in_host("nft", "add chain inet bystander keepme")
        lab.in_host("nft", "add rule inet bystander keepme counter accept")
    else:
        lab.in_host("iptables", "-N", "bystander")
        lab.in_host("iptables", "-A", "bystander", "-j", "RETURN")
        lab.in_host("ipset", "create", "bystander", "hash:ip")
        lab.in_host("ipset", "add", "bystander", "198.18.254.1")


def _bystanders_intact(lab: Lab) -> None:
    if lab.dataplane == "nftables":
        out = lab.in_host("nft", "list", "table", "inet", "bystander").stdout
        assert "chain keepme" in out and "accept" in out, out
    else:
        assert "-A bystander -j RETURN" in lab.in_host("iptables-save").stdout
        assert "198.18.254.1" in lab.in_host("ipset", "list", "bystander").stdout


def _repaired_within(lab: Lab, tamper: list[str], what: str) -> float:
    lab.in_host(*tamper)
    took = lab.wait_for(lambda: enforced(lab), REFRESH + 6, f"enforcement whole again after {what}")
    return took


def test_tampered_ruleset_is_repaired(rig: Lab) -> None:
    _add_bystanders(rig)
    assert enforced(rig)
    srv_if = rig.state.workloads["srv"].iface
    if rig.dataplane == "nftables":
        tampers = [
            (["nft", "delete", "table", "inet", "calico"], "deleting Calico's table"),
            (["nft", "flush", "chain", "inet", "calico", f"tw-{srv_if}"], "flushing srv's to-workload chain"),
        ]
        table = json.loads(rig.in_host("nft", "-j", "list", "table", "inet", "calico").stdout)["nftables"]
        sets = [e["set"]["name"] for e in table if "set" in e and e["set"]["name"].startswith("s4-")]
        tampers += [(["nft", "flush", "set", "inet", "calico", s], f"flushing set {s}") for s in sets]
    else:
        tampers = [
            (["iptables", "-F", f"cali-tw-{srv_if}"], "flushing srv's cali-tw chain"),
            (["iptables", "-F", "cali-FORWARD"], "flushing cali-FORWARD"),
        ]
        sets = [s for s in rig.in_host("ipset", "list", "-n").stdout.split() if s.startswith("cali40")]
        tampers += [(["ipset", "flush", s], f"flushing ipset {s}") for s in sets]
    assert len(tampers) >= 3, tampers
    for argv, what in tampers:
        took = _repaired_within(rig, argv, what)
        print(f"{rig.dataplane}: {what}: whole again after {took:.1f}s")
        _bystanders_intact(rig)


# --- bad data ----------------------------------------------------------------------------------------------------


async def _raw_put(lab: Lab, items: dict[str, bytes]) -> None:
    kv = await open_kv(from_env(lab.env))
    try:
        for key, value in items.items():
            await kv.put(key, value)
    finally:
        await kv.close()


def test_bad_data_is_logged_and_fails_closed(rig: Lab) -> None:
    rig.add_workload("srv2", "app=srv2")
    rig.add_workload("victim", "app=cli")
    rig.apply(POLICY2)
    rig.wait_for(lambda: rig.can("cli", "srv2") and rig.can("victim", "srv"), CONVERGE, "both pairs allowed")
    pid = rig.felix_pid()
    wep = f"{RESOURCE_PREFIX}workloadendpoints/default/"
    victim_key = wep + rig.state.workloads["victim"].endpoint_name
    junk_key = wep + "h1-k8s-junk-eth0"
    schema_key = wep + "h1-k8s-schema-eth0"
    policy_key = f"{RESOURCE_PREFIX}networkpolicies/default/srv2-from-cli"
    bad_policy = {
        "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
        "metadata": {"name": "srv2-from-cli", "namespace": "default"},
        "spec": {"selector": "app == 'srv2'", "types": ["Ingress"],
                 "ingress": [{"action": "Explode", "protocol": "TCP", "destination": {"ports": ["not a port"]}}]},
    }
    schema_bad = {
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": "h1-k8s-schema-eth0", "namespace": "default"},
        "spec": {"node": "h1", "interfaceName": 42, "ipNetworks": "everything"},
    }
    asyncio.run(_raw_put(rig, {
        victim_key: b"{this is not json",
        junk_key: b"\x00\xffgarbage",
        schema_key: json.dumps(schema_bad).encode(),
        policy_key: json.dumps(bad_policy).encode(),
    }))
    # Fail closed: the endpoint felix can no longer trust is cut off; the policy it cannot render drops.
    rig.wait_for(lambda: not rig.can("victim", "srv"), CONVERGE, "bad endpoint's traffic dropped")
    rig.wait_for(lambda: not rig.can("cli", "srv2"), CONVERGE, "unrenderable policy drops what it selected")
    assert not rig.can("cli", "srv2", ipv6=True)
    assert not rig.can("srv", "victim", proto="icmp")
    # Everything else is still served, by the same felix, which says it is ready.
    assert enforced(rig)
    assert rig.felix_pid() == pid and pid_alive(pid)
    assert rig.readiness() == 200
    log = rig.felix_log()
    for key in (victim_key, junk_key, schema_key, policy_key):
        name = key.rsplit("/", 1)[1]
        assert name in log, f"felix log does not mention the bad key {key}"
    # And it still follows good data: fixing the policy reopens it. Written raw, because calicoctl cannot
    # replace or delete a value it cannot decode (ResourceStore.update/delete decode the current value first).
    asyncio.run(_raw_put(rig, {policy_key: json.dumps(yaml.safe_load(POLICY2)).encode()}))
    rig.wait_for(lambda: rig.can("cli", "srv2"), CONVERGE, "fixed policy in force again")
    assert not rig.can("victim", "srv")

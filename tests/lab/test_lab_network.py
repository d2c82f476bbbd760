"""Many hosts: workloads on different hosts reach each other through routes BGP distributed, policy selects
remote workloads, addresses come from IPAM and go back to it, a borrowed address is routed, and the network
rides out BIRD being killed and a whole host stopping.

Every lab here runs `calico-node` on each host (felix, the BGP renderer, BIRD) and is built by `calico-lab up`,
exactly as a user builds it. Probes are real TCP round trips between workload namespaces.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest

from calico.lab.probe import probe
from tests.lab.conftest import Lab, LabFactory

pytestmark = pytest.mark.heavy

CONVERGE = 30.0  # BGP sessions up and routes in every kernel after `up` / a workload's first block

OPEN = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: kns.default
spec:
  ingress:
  - action: Allow
  egress:
  - action: Allow
"""

ONLY_WEB_TO_DB = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: db-from-web
spec:
  selector: role == "db"
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == "web"
    destination:
      ports: [8080]
"""

CASES = [("nftables", "embedded"), ("iptables", "etcd")]


def converge(lab: Lab, timeout: float = CONVERGE) -> None:
    lab.cli("wait", "--timeout", str(timeout), timeout=timeout + 30)


def add(lab: Lab, name: str, host: str, labels: str = "", *extra: str) -> None:
    lab.cli("workload", "add", name, "--host", host, "--labels", labels, "--profile", "kns.default", *extra)


def block_of(lab: Lab, host: str, version: int) -> str:
    blocks = [b for b in lab.host_status(host)["blocks"] if ipaddress.ip_network(b).version == version]
    assert blocks, f"{host} holds no IPv{version} block"
    return blocks[0]


@pytest.fixture(scope="module", params=CASES, ids=[f"{dp}-{ds}" for dp, ds in CASES])
def mesh(request: pytest.FixtureRequest, lab_factory: LabFactory) -> Iterator[Lab]:
    """Three hosts in one subnet, full BGP mesh; web on h1, client on h2, db on h3."""
    lab = lab_factory(request.param[0], request.param[1], "--hosts", "3")
    try:
        lab.apply(OPEN)
        add(lab, "web", "h1", "role=web")
        add(lab, "client", "h2", "role=client")
        add(lab, "db", "h3", "role=db")
        converge(lab)
        yield lab
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None)


def test_every_workload_reaches_every_other_across_hosts_ipv4_and_ipv6(mesh: Lab) -> None:
    names = ["web", "client", "db"]
    for src in names:
        for dst in names:
            if src != dst:
                assert mesh.can(src, dst), f"{src} -> {dst} (IPv4)"
                assert mesh.can(src, dst, ipv6=True), f"{src} -> {dst} (IPv6)"


def test_routes_are_the_other_hosts_blocks_learned_over_bgp(mesh: Lab) -> None:
    st = mesh.status()
    hosts = {h["name"]: h for h in st["hosts"]}
    for name, h in hosts.items():
        assert h["sessions"] is not None and len(h["sessions"]) == 4  # two peers, IPv4 and IPv6
        assert all(s["established"] and s["peer_type"] == "node-to-node mesh" for s in h["sessions"])
        routes = mesh.routes(name)
        for other, oh in hosts.items():
            if other == name:
                continue
            gw4 = oh["address"].split("/")[0]
            for block in oh["blocks"]:
                assert block in routes, f"{name} has no route to {other}'s block {block}"
                if ipaddress.ip_network(block).version == 4:
                    assert f"via {gw4} " in routes[block], routes[block]
        assert "default" not in routes  # nobody exports a default route
        own = [b for b in h["blocks"]]
        assert all(routes.get(b, "").startswith("blackhole") for b in own), (own, routes)


def test_policy_selects_workloads_on_other_hosts(mesh: Lab) -> None:
    mesh.apply(ONLY_WEB_TO_DB)
    try:
        mesh.wait_for(lambda: not mesh.can("client", "db"), 10, "client (h2) cut off from db (h3)")
        assert mesh.can("web", "db") and mesh.can("web", "db", ipv6=True)  # web on h1 still allowed
        assert not mesh.can("client", "db", ipv6=True)
        assert mesh.can("client", "web")  # the policy selects only db
        # Relabel the remote source: the IP set on h3 follows a workload on h2.
        mesh.ctl("label", "workloadendpoint", mesh.state.workloads["client"].endpoint_name, "role=web",
                 "--overwrite", "-n", "default")
        mesh.wait_for(lambda: mesh.can("client", "db"), 10, "relabelled client (h2) allowed into db (h3)")
        mesh.ctl("label", "workloadendpoint", mesh.state.workloads["client"].endpoint_name, "role=client",
                 "--overwrite", "-n", "default")
        mesh.wait_for(lambda: not mesh.can("client", "db"), 10, "client cut off again")
    finally:
        mesh.delete(ONLY_WEB_TO_DB)
    mesh.wait_for(lambda: mesh.can("client", "db"), 10, "policy gone")


def test_a_deleted_workload_is_unreachable_everywhere_and_its_addresses_released(mesh: Lab) -> None:
    add(mesh, "gone", "h2")
    wl = mesh.state.workloads["gone"]
    mesh.wait_for(lambda: mesh.can("web", "gone") and mesh.can("db", "gone"), 10, "new workload reachable")
    mesh.cli("workload", "del", "gone")
    for ip in (wl.ipv4, wl.ipv6):
        shown = mesh.ctl("ipam", "show", "--ip", ip).stdout
        assert "not assigned" in shown, shown
    for src in ("web", "db"):
        s = mesh.state.workloads[src]
        # Its namespace is gone: nothing may answer at its address from any host.
        assert not probe(s.netns, mesh.state.workloads["client"].netns, wl.ipv4, "tcp", 8080, 0.5).ok
    check = mesh.ctl("ipam", "check").stdout
    assert "found 0 problems" in check, check


def test_several_workloads_added_at_once_and_the_matrix_sees_them(mesh: Lab) -> None:
    bad = mesh.cli("workload", "add", "m0@h1", "m9@h9", "--profile", "kns.default", ok=False)
    assert "no host 'h9'" in bad.stderr + bad.stdout
    assert "m0" not in mesh.state.workloads  # refused before anything was attached
    out = mesh.cli("workload", "add", "m1@h1", "m2@h3", "--profile", "kns.default").stdout
    try:
        st = mesh.state
        assert (st.workloads["m1"].host, st.workloads["m2"].host) == ("h1", "h3"), out
        assert st.workloads["m1"].ipv4 != st.workloads["m2"].ipv4
        # The matrix's TCP probes (every pair at once, from one process): 5 open workloads, 20 pairs.
        mesh.wait_for(lambda: mesh.cli("matrix").stdout.count("ok") == 20, 15, "every pair in the matrix ok")
        assert mesh.can("m1", "m2") and mesh.can("client", "m1", ipv6=True)
    finally:
        for name in ("m1", "m2"):
            mesh.cli("workload", "del", name, ok=None)


def test_a_borrowed_address_is_routed_to_the_host_that_borrowed_it(mesh: Lab) -> None:
    """A one-block pool: h2 takes its only block; a workload on h1 then borrows from it; h1 announces the /32."""
    mesh.apply("""\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: tiny
spec:
  cidr: 198.19.250.0/30
  blockSize: 30
  natOutgoing: false
  nodeSelector: all()
""")
    try:
        add(mesh, "owner", "h2", "", "--ipv4-pool", "tiny")
        add(mesh, "borrower", "h1", "", "--ipv4-pool", "tiny")
        b = mesh.state.workloads["borrower"]
        assert ipaddress.ip_address(b.ipv4) in ipaddress.ip_network("198.19.250.0/30")
        assert "198.19.250.0/30" in mesh.host_status("h2")["blocks"]
        mesh.wait_for(lambda: f"{b.ipv4}/32" in mesh.routes("h3"), 15, "h3 learns the borrowed /32 from h1")
        assert f"via {mesh.state.hosts['h1'].addr4.split('/')[0]} " in mesh.routes("h3")[f"{b.ipv4}/32"]
        assert mesh.can("db", "borrower") and mesh.can("client", "borrower") and mesh.can("borrower", "owner")
    finally:
        for wl in ("borrower", "owner"):
            if wl in mesh.state.workloads:
                mesh.cli("workload", "del", wl)
        mesh.ctl("delete", "ippool", "tiny", ok=None)


def test_killing_bird_loses_no_probe(mesh: Lab) -> None:
    """BIRD on db's host is SIGKILLed and restarted under a bounded stream of connections from web: the kernel
    routes stay (persist) and the peers keep h3's routes (graceful restart) until it is back."""
    mesh.listen("db", 8080, "tcp", seconds=30)
    flow = mesh.flow("web", "db", 8080, "tcp", count=60, interval=0.1, timeout=0.5)
    time.sleep(1.0)
    mesh.cli("bird", "restart", "--kill", "--host", "h3")
    mesh.cli("bird", "restart", "--kill", "--host", "h1")
    results = flow.results()
    mesh.stop_spawned()
    assert len(results) == 60
    assert [r for r in results if not r["ok"]] == [], "connections lost while BIRD restarted"
    converge(mesh)


def test_a_stopped_host_is_routed_around_and_comes_back(mesh: Lab) -> None:
    """calico-node on h3 killed with all its children: the others drop h3's routes once graceful restart gives
    up (nodeMeshMaxRestartTime, 10 s in the lab); started again, the routes and the reachability return."""
    blocks = mesh.host_status("h3")["blocks"]
    mesh.cli("node", "stop", "--kill", "--host", "h3")
    started = time.monotonic()
    mesh.wait_for(lambda: not any(b in mesh.routes("h1") for b in blocks), 30, "h1 withdrew h3's blocks")
    took = time.monotonic() - started
    assert not any(b in mesh.routes("h2") for b in blocks)
    print(f"h3's routes withdrawn after {took:.1f}s")
    assert not mesh.can("web", "db", timeout=0.3)
    mesh.cli("node", "start", "--host", "h3")
    converge(mesh)
    assert mesh.can("web", "db") and mesh.can("db", "client", ipv6=True)


# --- route reflectors ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reflected(lab_factory: LabFactory) -> Iterator[Lab]:
    lab = lab_factory("nftables", "embedded", "--hosts", "4", "--route-reflectors", "1")
    try:
        lab.apply(OPEN)
        for i in range(1, 5):
            add(lab, f"w{i}", f"h{i}")
        converge(lab)
        yield lab
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None)


def test_route_reflector_clients_peer_only_with_the_reflector_and_reach_everyone(reflected: Lab) -> None:
    st = reflected.status()
    hosts = {h["name"]: h for h in st["hosts"]}
    rr_addr = hosts["h1"]["address"].split("/")[0]
    assert hosts["h1"]["route_reflector"]
    for name in ("h2", "h3", "h4"):
        peers = {s["peer_address"] for s in hosts[name]["sessions"] if ":" not in s["peer_address"]}
        assert peers == {rr_addr}, f"{name} peers with {peers}, not only the reflector"
    assert len([s for s in hosts["h1"]["sessions"] if ":" not in s["peer_address"]]) == 3
    for src in ("w2", "w3", "w4"):
        for dst in ("w1", "w2", "w3", "w4"):
            if src != dst:
                assert reflected.can(src, dst) and reflected.can(src, dst, ipv6=True), f"{src} -> {dst}"
    # A reflected route keeps its originator's next hop: h4 reaches h2's block via h2, not via the reflector.
    h2_block = block_of(reflected, "h2", 4)
    assert f"via {hosts['h2']['address'].split('/')[0]} " in reflected.routes("h4")[h2_block]


# --- etcd cluster faults ---------------------------------------------------------------------------------------


def test_an_etcd_member_killed_allocation_and_felix_carry_on(fresh_lab_factory: LabFactory) -> None:
    lab = fresh_lab_factory("nftables", "etcd", "--hosts", "2", "--etcd-members", "3")
    lab.apply(OPEN)
    add(lab, "a", "h1", "role=a")
    add(lab, "b", "h2", "role=b")
    converge(lab)
    assert lab.can("a", "b")
    lab.cli("etcd", "kill", "--member", "0")
    add(lab, "c", "h2", "role=c")  # IPAM and the endpoint write go to the surviving members
    lab.wait_for(lambda: lab.can("a", "c"), 20, "new workload reachable with one etcd member down")
    lab.apply(ONLY_WEB_TO_DB.replace('role == "db"', 'role == "c"').replace('role == "web"', 'role == "nobody"'))
    lab.wait_for(lambda: not lab.can("a", "c"), 20, "felix applies policy with one etcd member down")
    lab.cli("etcd", "restart", "--member", "0")
    add(lab, "d", "h1", "role=d")
    lab.wait_for(lambda: lab.can("d", "b"), 20, "all good after the member is back")
    check = lab.ctl("ipam", "check").stdout
    assert "found 0 problems" in check, check

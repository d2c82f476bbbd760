"""calicoctl end to end through its installed entry point, on the embedded store and on a real etcd.

Manifests are written the way Calico's documentation prints them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.etcd_server import EtcdServer

CALICOCTL = shutil.which("calicoctl", path=str(Path(sys.executable).parent)) or "calicoctl"

MANIFEST = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-tcp-6379
spec:
  selector: role == 'database'
  types:
  - Ingress
  - Egress
  ingress:
  - action: Allow
    metadata:
      annotations:
        from: frontend
        to: database
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports:
      - 6379
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: allow-tcp-6379
  namespace: production
spec:
  selector: role == 'database'
  types:
  - Ingress
  - Egress
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports:
      - 6379
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: my.ippool-1
spec:
  cidr: 198.18.0.0/16
  ipipMode: CrossSubnet
  natOutgoing: true
  disabled: false
  nodeSelector: all()
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: some.name
spec:
  node: rack1-host1
  peerIP: 198.19.0.1
  asNumber: 64567
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: some.name
  labels:
    type: production
spec:
  interfaceName: eth0
  node: myhost
  expectedIPs:
  - 198.18.10.1
  profiles:
  - profile1
  - profile2
  ports:
  - name: some-port
    port: 1234
    protocol: TCP
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-my--nginx--b1337a-eth0
  namespace: default
  labels:
    app: frontend
    projectcalico.org/namespace: default
    projectcalico.org/orchestrator: k8s
spec:
  node: node1
  orchestrator: k8s
  endpoint: eth0
  containerID: 1337495556942031415926535
  pod: my-nginx-b1337a
  ipNetworks:
  - 198.18.0.1/32
  profiles:
  - profile1
  interfaceName: cali0ef24ba
  mac: ca:fe:1d:52:bb:e9
  ports:
  - name: some-port
    port: 1234
    protocol: TCP
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: dev-apps
spec:
  ingress:
  - action: Deny
    source:
      nets:
      - 198.18.0.0/16
  - action: Allow
    source:
      selector: stage == 'development'
  egress:
  - action: Allow
  labelsToApply:
    stage: development
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: internal-access
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: internal-access.allow-tcp-port-6379
spec:
  tier: internal-access
  selector: role == 'database'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'frontend'
    destination:
      ports:
      - 6379
"""


@dataclass
class Ctl:
    env: dict[str, str]
    tmp: Path

    def __call__(self, *args: str, stdin: str | None = None, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [CALICOCTL, *args], env=self.env, input=stdin, capture_output=True, text=True, timeout=60
        )
        if ok is True:
            assert proc.returncode == 0, f"calicoctl {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
        elif ok is False:
            assert proc.returncode != 0, f"calicoctl {' '.join(args)} should have failed:\n{proc.stdout}"
        return proc

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)


@pytest.fixture(scope="module")
def module_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(tmp_path_factory.mktemp("etcd-ctl"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(params=["embedded", "etcd"])
def ctl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ctl]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_", "CALICO"))}
    if request.param == "embedded":
        env |= {"DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": str(tmp_path / "store.db")}
        yield Ctl(env, tmp_path)
        return
    server: EtcdServer = request.getfixturevalue("module_etcd")
    env |= {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": server.endpoint}
    subprocess.run(["etcdctl", f"--endpoints={server.endpoint}", "del", "--prefix", "/calico/"],
                   check=True, capture_output=True, env={"ETCDCTL_API": "3", "PATH": os.environ["PATH"]})
    yield Ctl(env, tmp_path)


def test_apply_documented_manifests_and_get_tables(ctl: Ctl) -> None:
    f = ctl.file("all.yaml", MANIFEST)
    out = ctl("apply", "-f", f).stdout
    assert "Successfully applied 9 resource(s)" in out
    assert ctl("get", "ippools").stdout.splitlines() == [
        "NAME          CIDR            SELECTOR",
        "my.ippool-1   198.18.0.0/16   all()",
    ]
    wide = ctl("get", "ippool", "-o", "wide").stdout.splitlines()
    assert wide[1].split() == ["my.ippool-1", "198.18.0.0/16", "all()", "true", "CrossSubnet", "Never", "false", "false"]
    assert ctl("get", "gnp").stdout.split() == ["NAME", "allow-tcp-6379", "internal-access.allow-tcp-port-6379"]
    assert ctl("get", "networkpolicy").stdout.split() == ["NAME"]  # namespace "default" is empty
    assert ctl("get", "networkpolicy", "-n", "production").stdout.split() == ["NAME", "allow-tcp-6379"]
    assert ctl("get", "policy", "-A").stdout.split() == ["NAMESPACE", "NAME", "production", "allow-tcp-6379"]
    assert ctl("get", "wep").stdout.splitlines()[1].split() == ["my-nginx-b1337a", "node1", "198.18.0.1/32", "cali0ef24ba"]
    assert ctl("get", "bgppeers").stdout.splitlines()[1].split() == ["some.name", "198.19.0.1", "rack1-host1", "64567"]
    assert ctl("get", "tiers").stdout.split() == ["NAME", "ORDER", "default", "1000000", "internal-access", "100"]
    assert ctl("get", "hostendpoints", "-o", "name").stdout.split() == ["hostendpoint/some.name"]


def test_yaml_and_json_output_apply_back_unchanged(ctl: Ctl) -> None:
    ctl("apply", "-f", ctl.file("all.yaml", MANIFEST))
    for fmt in ("yaml", "json"):
        for kind in ("globalnetworkpolicies", "networkpolicies -A", "ippools", "wep", "hep", "profiles", "tiers", "bgppeers"):
            first = ctl("get", *kind.split(), "-o", fmt).stdout
            assert ctl("apply", "-f", "-", stdin=first).returncode == 0
            again = ctl("get", *kind.split(), "-o", fmt).stdout
            strip = lambda t: [  # noqa: E731 - resourceVersion moves on every write
                {**i, "metadata": {k: v for k, v in i["metadata"].items() if k != "resourceVersion"}}
                for i in yaml.safe_load(t)["items"]
            ]
            assert strip(again) == strip(first), (fmt, kind)
    one = yaml.safe_load(ctl("get", "ippool", "my.ippool-1", "-o", "yaml").stdout)
    assert one["kind"] == "IPPool" and one["spec"]["blockSize"] == 26 and one["spec"]["vxlanMode"] == "Never"
    assert one["metadata"]["uid"] and one["metadata"]["creationTimestamp"] and one["metadata"]["resourceVersion"]


def test_invalid_document_refuses_whole_file(ctl: Ctl) -> None:
    bad = MANIFEST + """---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: broken
spec:
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: ["90:80"]
"""
    proc = ctl("apply", "-f", ctl.file("bad.yaml", bad), ok=False)
    assert "GlobalNetworkPolicy(broken)" in proc.stderr and "spec.ingress[0].destination.ports[0]" in proc.stderr
    assert ctl("get", "ippools").stdout.split() == ["NAME", "CIDR", "SELECTOR"]  # nothing was written
    unknown = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 198.18.0.0/16, natOutgoin: true}\n"
    proc = ctl("create", "-f", ctl.file("unknown.yaml", unknown), ok=False)
    assert "IPPool(p)" in proc.stderr and "natOutgoin" in proc.stderr
    proc = ctl("apply", "-f", ctl.file("junk.yaml", "kind: [\n"), ok=False)
    assert "junk.yaml" in proc.stderr


def test_create_replace_delete_conflicts(ctl: Ctl) -> None:
    f = ctl.file("pool.yaml", "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p1}\nspec: {cidr: 198.18.0.0/24}\n")
    assert "Successfully created 1 'IPPool' resource(s)" in ctl("create", "-f", f).stdout
    assert "already exists" in ctl("create", "-f", f, ok=False).stderr
    ctl("create", "-f", f, "--skip-exists")
    current = yaml.safe_load(ctl("get", "ippool", "p1", "-o", "yaml").stdout)
    current["spec"]["natOutgoing"] = True
    ctl("replace", "-f", "-", stdin=yaml.safe_dump(current))
    # The same resourceVersion again is now stale.
    assert "stale" in ctl("replace", "-f", "-", stdin=yaml.safe_dump(current), ok=False).stderr
    overlap = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p2}\nspec: {cidr: 198.18.0.128/25}\n"
    proc = ctl("apply", "-f", ctl.file("p2.yaml", overlap + "---\n" + overlap.replace("p2", "p3").replace("198.18.0.128/25", "198.19.0.0/24")), ok=False)
    assert "IPPool(p2)" in proc.stderr and "overlaps" in proc.stderr
    assert "Partial success: applied 1 out of 2" in proc.stdout
    ctl("delete", "ippool", "p1")
    assert "does not exist" in ctl("delete", "ippool", "p1", ok=False).stderr
    ctl("delete", "ippool", "p1", "--skip-not-exists")
    assert "cannot be deleted" in ctl("delete", "tier", "default", ok=False).stderr
    ctl("delete", "-f", ctl.file("p3.yaml", overlap.replace("p2", "p3").replace("198.18.0.128/25", "198.19.0.0/24")))
    assert ctl("get", "ippools", "-o", "name").stdout == ""


def test_label_patch_namespace_validate_version(ctl: Ctl) -> None:
    ctl("apply", "-f", ctl.file("all.yaml", MANIFEST))
    ctl("label", "hostendpoint", "some.name", "rack=r1")
    assert "--overwrite" in ctl("label", "hep", "some.name", "rack=r2", ok=False).stderr
    ctl("label", "hep", "some.name", "rack=r2", "--overwrite")
    hep = yaml.safe_load(ctl("get", "hep", "some.name", "-o", "yaml").stdout)
    assert hep["metadata"]["labels"] == {"type": "production", "rack": "r2"}
    ctl("label", "hep", "some.name", "--remove", "rack")
    ctl("patch", "ippool", "my.ippool-1", "-p", '{"spec": {"natOutgoing": false, "disabled": true}}')
    pool = yaml.safe_load(ctl("get", "ippool", "my.ippool-1", "-o", "json").stdout)
    assert pool["spec"]["natOutgoing"] is False and pool["spec"]["disabled"] is True
    assert "spec.blockSize" in ctl("patch", "ippool", "my.ippool-1", "-p", '{"spec": {"blockSize": 99}}', ok=False).stderr
    np = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\nspec: {selector: all()}\n"
    assert "does not match --namespace" in ctl("apply", "-f", ctl.file("np.yaml", np), "-n", "b", ok=False).stderr
    ctl("apply", "-f", ctl.file("np2.yaml", np.replace(", namespace: a", "")), "-n", "b")
    assert ctl("get", "networkpolicy", "x", "-n", "b", "-o", "name").stdout.strip() == "networkpolicy/x"
    assert "does not exist" in ctl("get", "networkpolicy", "x", ok=False).stderr
    assert "Successfully validated 9 resource(s)" in ctl("validate", "-f", ctl.file("v.yaml", MANIFEST)).stdout
    assert "Client Version:" in ctl("version").stdout
    assert "unknown resource type" in ctl("get", "bogus", ok=False).stderr


def test_unreachable_etcd_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_", "CALICO"))}
    env |= {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://127.0.0.1:1"}
    proc = Ctl(env, tmp_path)("get", "ippools", ok=False)
    assert "etcdv3 at http://127.0.0.1:1" in proc.stderr


@pytest.mark.heavy
def test_config_file_with_tls_and_env_with_auth(tmp_path: Path, etcd_factory) -> None:  # type: ignore[no-untyped-def]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "DATASTORE_", "CALICO"))}
    pool = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p1}\nspec: {cidr: 198.18.0.0/24}\n"
    tls = etcd_factory(tls=True)
    assert tls.tls is not None
    cfg = tmp_path / "calicoctl.cfg"
    cfg.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\nspec:\n"
        f"  datastoreType: etcdv3\n  etcdEndpoints: {tls.endpoint}\n  etcdCACertFile: {tls.tls.ca_cert}\n"
        f"  etcdCertFile: {tls.tls.client_cert}\n  etcdKeyFile: {tls.tls.client_key}\n"
    )
    ctl = Ctl(base, tmp_path)
    ctl("--config", str(cfg), "apply", "-f", ctl.file("pool.yaml", pool))
    assert ctl("--config", str(cfg), "get", "ippools", "-o", "name").stdout.split() == ["ippool/p1"]
    no_cert = tmp_path / "nocert.cfg"
    no_cert.write_text("\n".join(line for line in cfg.read_text().splitlines() if "Cert" not in line and "Key" not in line) + "\n")
    assert ctl("--config", str(no_cert), "get", "ippools", ok=False).returncode != 0

    auth = etcd_factory(auth=True)
    env = base | {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": auth.endpoint, "ETCD_USERNAME": "root"}
    ok = Ctl(env | {"ETCD_PASSWORD": auth.root_password}, tmp_path)
    ok("apply", "-f", ok.file("pool.yaml", pool))
    assert ok("get", "ippools", "-o", "name").stdout.split() == ["ippool/p1"]
    bad = Ctl(env | {"ETCD_PASSWORD": "wrong"}, tmp_path)("get", "ippools", ok=False)
    assert "etcdv3 at" in bad.stderr

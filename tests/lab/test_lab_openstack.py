"""OpenStack end to end on the lab: the real Neutron API server with the calico driver, driven by the unmodified
`openstack` CLI; VMs booted on two compute hosts; real traffic allowed and blocked by security groups.

The Neutron subnet 198.19.64.0/24 lies outside the lab's own pool; a disabled IPPool covers it (Calico's IPAM
never hands it out, BGP advertises the VMs' /32s from their hosts).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from tests.lab.conftest import Lab, LabFactory

pytestmark = pytest.mark.heavy

VM_POOL = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: openstack-vms
spec:
  cidr: 198.19.64.0/18
  disabled: true
  natOutgoing: false
"""


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


class OpenStackCLI:
    def __init__(self, lab: Lab) -> None:
        out = lab.cli("env").stdout
        self.env = dict(os.environ)
        for line in out.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            self.env[key] = value.strip("'")

    def __call__(self, *args: str) -> dict:
        proc = subprocess.run(["openstack", *args, "-f", "json"], env=self.env, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}"
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def quiet(self, *args: str) -> None:
        proc = subprocess.run(["openstack", *args], env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)
        assert proc.returncode == 0, f"openstack {' '.join(args)}: {proc.stderr}"


@pytest.fixture(scope="module")
def cloud(lab_factory: LabFactory) -> Iterator[tuple[Lab, OpenStackCLI]]:
    lab = lab_factory("nftables", "embedded", "--hosts", "2")
    try:
        lab.apply(VM_POOL)
        lab.cli("openstack", "up", timeout=180)
        yield lab, OpenStackCLI(lab)
    finally:
        lab.stop_spawned()
        lab.cli("down", ok=None, timeout=120)


def test_security_groups_decide_what_reaches_vms(cloud: tuple[Lab, OpenStackCLI]) -> None:
    lab, os_cli = cloud
    net = os_cli("network", "create", "net1")
    os_cli("subnet", "create", "sub1", "--network", net["id"], "--subnet-range", "198.19.64.0/24")
    web = os_cli("security", "group", "create", "web")
    os_cli("security", "group", "rule", "create", web["id"], "--ingress", "--protocol", "tcp", "--dst-port", "8080")
    p1 = os_cli("port", "create", "p1", "--network", net["id"], "--security-group", web["id"])
    p2 = os_cli("port", "create", "p2", "--network", net["id"])  # the project's default group
    lab.cli("vm", "boot", "vm1", "--host", "h1", "--port", p1["id"], "--static", timeout=120)
    lab.cli("vm", "boot", "vm2", "--host", "h2", "--port", p2["id"], "--static", timeout=120)
    lab.cli("wait", "--timeout", "60", timeout=90)
    # web allows tcp 8080 in from anywhere, nothing else
    assert eventually(lambda: lab.can("vm2", "vm1", port=8080))
    assert not lab.can("vm2", "vm1", port=9090)
    # the default group lets in only its own members: vm1 (web only) is not one
    assert not lab.can("vm1", "vm2", port=8080)
    os_cli.quiet("port", "set", p1["id"], "--security-group", os_cli("port", "show", p2["id"])["security_group_ids"][0])
    assert eventually(lambda: lab.can("vm1", "vm2", port=8080))  # remote-group membership took effect

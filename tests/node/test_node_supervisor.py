"""calico-node as a real process inside a test host namespace: the Node registered with the detected address,
Felix ready through `calico-node -felix-ready`, Felix killed by PID and restarted, BIRD started once the
renderer wrote bird.cfg and answering `-bird-live` (and `-bird-ready` failing while its BGP peer is absent), then
SIGTERM: exit 0, every child gone, Calico's nft table still in the namespace.

The renderer is a stand-in (`CALICO_NODE_CONFD_CMD`: a shell that writes a minimal valid bird.cfg and waits), so
this test does not need calico.bgp. Run under /tmp/calico-netns.lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.store import NotFound, ResourceStore
from tests.node.conftest import CALICO_NODE, NodeHost, require_root_tools, sh

pytestmark = [pytest.mark.heavy, pytest.mark.timeout(120)]

BIRD_CFG = """\
router id 198.19.1.3;
protocol device { }
protocol kernel { ipv4 { import none; export none; }; persist; }
protocol bgp Mesh_198_19_1_254 {
  local 198.19.1.3 as 64512;
  neighbor 198.19.1.254 as 64512;
  connect retry time 1;
  ipv4 { import none; export none; };
}
"""


def wait_for(pred: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            tail = "\n" + log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


async def registered_address(db: Path) -> str | None:
    if not db.exists():
        return None
    kv = await EmbeddedKV.open(str(db))
    try:
        node = await ResourceStore(kv).get("Node", "node-a")
    except NotFound:
        return None
    finally:
        await kv.close()
    return node.spec.bgp.ipv4Address  # type: ignore[attr-defined]


async def test_calico_node_supervises_felix_confd_and_bird(
    test_host: NodeHost, short_dir: Path, tmp_path: Path
) -> None:
    require_root_tools("bird", "nft")
    template = short_dir / "bird.cfg.in"
    template.write_text(BIRD_CFG)
    run_dir, confd_dir, log = short_dir / "run", short_dir / "confd", tmp_path / "calico-node.log"
    env = {
        **os.environ,
        "NODENAME": "node-a",
        "IP": "autodetect",
        "IP_AUTODETECTION_METHOD": f"interface={test_host.en}",
        "CALICO_EMBEDDED_PATH": str(tmp_path / "kv.db"),
        "CALICO_NODENAME_FILE": str(tmp_path / "nodename"),
        "CALICO_RUN_DIR": str(run_dir),
        "CALICO_CONFD_DIR": str(confd_dir),
        "CALICO_NODE_CONFD_CMD": f"/bin/sh -c 'cp {template} \"$CALICO_CONFD_DIR/bird.cfg\" && exec sleep 300'",
        "FELIX_REPORTINGINTERVALSECS": "0",
    }
    for var in ("DATASTORE_TYPE", "ETCD_ENDPOINTS"):
        env.pop(var, None)
    with open(log, "wb") as out:
        # `ip netns exec` execs calico-node: this pid is the supervisor's.
        node = subprocess.Popen(["ip", "netns", "exec", test_host.host, CALICO_NODE], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    children: list[int] = []
    try:
        # 1. the Node, with the detected address and its subnet
        deadline = time.monotonic() + 20
        while await registered_address(tmp_path / "kv.db") != "198.19.1.3/24":
            assert node.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "Node not registered\n" + log.read_text()
            time.sleep(0.1)

        # 2. Felix ready, as the readiness probe sees it
        wait_for(lambda: test_host.node("-felix-ready", env=env).returncode == 0, 40, "felix ready", log)
        assert test_host.node("-felix-live", env=env).returncode == 0

        # 3. Felix killed by PID: restarted (after the first back-off step), logged with how it died
        felix_pid = read_pid(run_dir / "felix.pid")
        assert felix_pid is not None and alive(felix_pid)
        children.append(felix_pid)
        os.kill(felix_pid, signal.SIGKILL)
        wait_for(lambda: read_pid(run_dir / "felix.pid") not in (None, felix_pid), 15, "felix restarted", log)
        new_felix = read_pid(run_dir / "felix.pid")
        assert new_felix is not None
        children.append(new_felix)
        assert "felix was killed by SIGKILL after" in log.read_text()
        wait_for(lambda: test_host.node("-felix-ready", env=env).returncode == 0, 40, "restarted felix ready", log)

        # 4. BIRD, started once the stand-in renderer wrote bird.cfg: live, not ready (its peer does not exist)
        wait_for(lambda: test_host.node("-bird-live", env=env).returncode == 0, 15, "bird live", log)
        bird_pid, confd_pid = read_pid(run_dir / "bird.pid"), read_pid(run_dir / "confd.pid")
        assert bird_pid is not None and confd_pid is not None
        children += [bird_pid, confd_pid]
        ready = test_host.node("-bird-ready", env=env)
        assert ready.returncode == 1
        assert ready.stderr.startswith("calico/node is not ready: BIRD is not ready: ")
        # Started with -R, BIRD also waits in graceful restart recovery for the peer that never comes.
        assert "BGP not established with Mesh_198_19_1_254" in ready.stderr

        # 5. SIGTERM: a clean stop of everything, exit 0, the firewall left in place
        node.send_signal(signal.SIGTERM)
        assert node.wait(30) == 0, log.read_text()
        assert not [pid for pid in children if alive(pid)], log.read_text()
        assert sh("ip", "netns", "exec", test_host.host, "nft", "list", "table", "inet", "calico",
                  check=False).returncode == 0
        text = log.read_text()
        for name in ("felix", "confd", "bird"):
            assert f"stopped {name} (pid" in text
    finally:
        if node.poll() is None:
            node.kill()  # the children follow (PR_SET_PDEATHSIG)
            node.wait(10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)

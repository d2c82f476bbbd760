"""An OpenStack compute host in network namespaces, for the DHCP agent's real tests.

In: a run id, a datastore kind ("embedded" or "etcd") and Felix's dataplane backend. Out: a `ComputeHost`:
  - a host namespace `cdh-<run>-host` (forwarding on) running calico-felix with the FelixConfiguration the ML2
    driver writes (interfacePrefix tap, metadataAddr/Port) and calico-dhcp-agent for node `h1`;
  - the datastore: an embedded file, or etcd running inside the host namespace (the test reaches it through
    the lab's loopback gateway, `calico.lab.daemons`);
  - `add_vm()`: a VM namespace `cdh-<run>-<vm>` joined by a veth whose host end is `tap` + port id[:11], as
    Nova's libvirt driver makes it (no address on the host side, MAC fe:.. of the port's); the VM side has
    the port's MAC and nothing else: its addresses come from DHCP;
  - `dhclient()`: isc-dhcp-client in a VM namespace, with a script of ours that configures the VM's address and
    routes (`ip -n <vm ns>`, never the root namespace; never /etc/resolv.conf) and records what it was given.
Every process is started by us and stopped by its PID; `close()` deletes every namespace (also at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calico.lab import daemons
from calico.lab.plan import ETCD_CLIENT_PORTS
from calico.openstack import names

BIN = Path(sys.executable).parent
HOSTNAME = "h1"
HEALTH_PORT = 9099

# dhclient's hook: runs inside the VM namespace; configures eth0 there and records the server's answer.
_SCRIPT = r'''#!{python}
import json, os, subprocess
NS, OUT = {ns!r}, {out!r}
env = {{k: v for k, v in os.environ.items() if k in ("reason", "interface") or k.startswith("new_")}}
reason, dev = env.get("reason", ""), env.get("interface", "eth0")

def ip(*args):
    subprocess.run(["ip", "-n", NS, *args], check=True, capture_output=True)

def classless(words):
    """RFC 3442's encoding as dhclient passes it: length, significant octets of the destination, router."""
    out = []
    while words:
        plen = int(words[0]); n = (plen + 7) // 8
        dest = ".".join((words[1:1 + n] + ["0"] * 4)[:4])
        out.append((f"{{dest}}/{{plen}}", ".".join(words[1 + n:5 + n])))
        words = words[5 + n:]
    return out

if reason in ("BOUND", "RENEW", "REBIND", "REBOOT"):
    ip("addr", "replace", f"{{env['new_ip_address']}}/{{env['new_subnet_mask']}}", "dev", dev)
    routes = classless(env.get("new_rfc3442_classless_static_routes", "").split())
    if not routes:
        routes = [("default", r) for r in env.get("new_routers", "").split()[:1]]
    for dest, via in routes:
        ip("route", "replace", dest, *(("dev", dev) if via == "0.0.0.0" else ("via", via, "dev", dev)))
elif reason in ("BOUND6", "RENEW6", "REBIND6", "REBOOT6") and "new_ip6_address" in env:  # none: stateless
    ip("-6", "addr", "replace", f"{{env['new_ip6_address']}}/{{env['new_ip6_prefixlen']}}", "dev", dev, "nodad")
with open(os.path.join(OUT, reason + ".json"), "w") as f:
    json.dump(env, f)
'''

_CONF4 = """option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name-servers, interface-mtu,
        rfc3442-classless-static-routes;
timeout {timeout};
retry 60;
"""
_CONF6 = """request dhcp6.name-servers;
timeout {timeout};
"""


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


@dataclass
class VM:
    name: str
    netns: str
    tap: str
    mac: str
    dir: Path  # the DHCP client's files: leases, script, what it was given


@dataclass
class ComputeHost:
    run_id: str
    datastore: str  # "embedded" | "etcd"
    backend: str = "nftables"
    vms: dict[str, VM] = field(default_factory=dict)
    _namespaces: list[str] = field(default_factory=list)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _etcd: list[tuple[int, str]] = field(default_factory=list)  # (pid, marker) for calico.lab.daemons.stop

    def __post_init__(self) -> None:
        # Not under pytest's tmp_path: dnsmasq rereads its files as user nobody, which must reach them.
        self.dir = Path(tempfile.mkdtemp(prefix=f"cdh-{self.run_id}-"))
        self.dir.chmod(0o755)
        self.state_dir = self.dir / "dhcp"
        self.netns = self._ns("host")
        atexit.register(self.close)
        sh("ip", "netns", "add", self.netns)
        sh("ip", "-n", self.netns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.default.accept_dad=0")
        self.env = self._datastore_env()

    def _ns(self, name: str) -> str:
        ns = f"cdh-{self.run_id}-{name}"
        self._namespaces.append(ns)
        return ns

    def _datastore_env(self) -> dict[str, str]:
        """What Felix and the agent (inside the host namespace) use; `client_env` is the test's own."""
        if self.datastore == "embedded":
            db = str(self.dir / "calico.db")
            self.client_env = {"DATASTORE_TYPE": "embedded", "CALICO_EMBEDDED_PATH": db}
            return dict(self.client_env)
        log = self.dir / "etcd.log"
        pid = daemons.start_etcd(self.netns, "127.0.0.1", self.dir / "etcd-data", log)
        self._etcd.append((pid, "etcd"))
        gw_pid, port = daemons.start_gateway(self.netns, "127.0.0.1", self.dir / "gateway.log")
        self._etcd.append((gw_pid, "calico.lab.gateway"))
        daemons.wait_http(f"http://127.0.0.1:{port}/health", 20, "etcd in the host namespace")
        self.client_env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": f"http://127.0.0.1:{port}"}
        return {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": f"http://127.0.0.1:{ETCD_CLIENT_PORTS[0]}"}

    # --- daemons --------------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **env}, start_new_session=True)
        log.close()
        self._procs[name] = proc
        return proc

    def start_felix(self) -> None:
        self._spawn("felix", [str(BIN / "calico-felix")], {
            **self.env, "FELIX_FELIXHOSTNAME": HOSTNAME, "FELIX_HEALTHENABLED": "true",
            "FELIX_DATAPLANEBACKEND": self.backend, "FELIX_LOGSEVERITYSCREEN": "info",
            "FELIX_MTUFILEPATH": str(self.dir / "mtu"),  # never the machine's /var/lib/calico
        })
        daemons.wait_felix_ready(self.netns, HEALTH_PORT, 30)

    def start_agent(self) -> None:
        self._spawn("agent", [str(BIN / "calico-dhcp-agent"), "--hostname", HOSTNAME, "--state-dir",
                              str(self.state_dir), "--log-dhcp", "--mtu", "1450"], self.env)

    def stop(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self, name: str) -> None:
        """SIGKILL to the process alone (not its group): a crash."""
        proc = self._procs.pop(name)
        proc.kill()
        proc.wait(5)

    def alive(self, name: str) -> bool:
        proc = self._procs.get(name)
        return proc is not None and proc.poll() is None

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dnsmasq_pid(self) -> int | None:
        try:
            return int((self.state_dir / "dnsmasq.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def leases(self) -> str:
        path = self.state_dir / "leases"
        return path.read_text() if path.exists() else ""

    def hosts_file(self) -> str:
        path = self.state_dir / "hosts"
        return path.read_text() if path.exists() else ""

    # --- VMs ------------------------------------------------------------------------------------------------

    def add_vm(self, name: str, port_id: str, mac: str) -> VM:
        ns = self._ns(name)
        tap = names.tap_name(port_id)
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # A real VM would do DAD; skipping it keeps DHCPv6 (which needs a usable link-local) quick.
        sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
           "net.ipv6.conf.default.accept_dad=0")
        sh("ip", "-n", self.netns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.netns, "link", "set", tap, "address", "fe" + mac[2:])  # libvirt's tap MAC
        sh("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", self.netns, "link", "set", tap, "up")
        vm_dir = self.dir / name
        vm_dir.mkdir()
        vm = VM(name, ns, tap, mac, vm_dir)
        self.vms[name] = vm
        return vm

    def dhclient(self, vm: VM, family: int = 4, timeout: int = 10, fresh: bool = False) -> subprocess.Popen[bytes]:
        """Start dhclient (foreground, one attempt) in the VM; `fresh` forgets its earlier leases."""
        leases = vm.dir / f"dhclient{family}.leases"
        if fresh:
            leases.unlink(missing_ok=True)
        script = vm.dir / "dhclient-script"
        script.write_text(_SCRIPT.format(python=sys.executable, ns=vm.netns, out=str(vm.dir)))
        script.chmod(0o755)
        conf = vm.dir / f"dhclient{family}.conf"
        conf.write_text((_CONF4 if family == 4 else _CONF6).format(timeout=timeout))
        for old in vm.dir.glob("*.json"):
            old.unlink()
        argv = ["dhclient", f"-{family}", "-1", "-d", "-v", "-cf", str(conf), "-sf", str(script), "-lf",
                str(leases), "-pf", str(vm.dir / f"dhclient{family}.pid"), "eth0"]
        log = open(vm.dir / f"dhclient{family}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(["ip", "netns", "exec", vm.netns, *argv], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self._procs[f"dhclient-{vm.name}-{family}"] = proc
        return proc

    def answer(self, vm: VM, reasons: tuple[str, ...], timeout: float) -> dict[str, Any] | None:
        """What the server gave, once the script ran for one of `reasons` (None: not within `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reason in reasons:
                path = vm.dir / f"{reason}.json"
                if path.exists():
                    with contextlib.suppress(ValueError):
                        return dict(json.loads(path.read_text()))
            time.sleep(0.05)
        return None

    def stop_dhclient(self, vm: VM, family: int = 4) -> None:
        self.stop(f"dhclient-{vm.name}-{family}")

    def vm_addresses(self, vm: VM, family: int = 4) -> list[str]:
        out = json.loads(sh("ip", "-n", vm.netns, "-j", f"-{family}", "addr", "show", "dev", "eth0"))
        return [f"{a['local']}/{a['prefixlen']}" for link in out for a in link["addr_info"]
                if a.get("scope") == "global"]

    def vm_ipv6_mtu(self, vm: VM) -> int:
        return int(sh("ip", "netns", "exec", vm.netns, "sysctl", "-n", "net.ipv6.conf.eth0.mtu").strip())

    def vm_routes(self, vm: VM, family: int = 4) -> list[dict[str, Any]]:
        return list(json.loads(sh("ip", "-n", vm.netns, "-j", f"-{family}", "route", "show")))

    def ping(self, vm: VM, dst: str) -> bool:
        proc = subprocess.run(["ip", "netns", "exec", vm.netns, "ping", "-c", "1", "-W", "1", dst],
                              capture_output=True, timeout=10, check=False)
        return proc.returncode == 0

    # --- teardown -------------------------------------------------------------------------------------------

    def _stop_orphaned_dnsmasq(self) -> None:
        """The dnsmasq a killed agent left (it outlives its agent), by its pid file and our command line."""
        pid = self.dnsmasq_pid()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return
        if pid and f"--pid-file={self.state_dir / 'dnsmasq.pid'}".encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        for name in list(self._procs):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.stop(name)
        self._stop_orphaned_dnsmasq()
        for pid, marker in self._etcd:
            daemons.stop(pid, marker)
        self._etcd.clear()
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._namespaces.clear()
        if not os.environ.get("CDH_KEEP"):  # debugging aid: keep the logs
            shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.close)

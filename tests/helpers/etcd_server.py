"""A throwaway single-node etcd for tests and benchmarks.

In: a scratch directory (data dir, log file and certificates go under it) and options for TLS with
client-certificate auth and/or username/password auth.
Out: a running `/usr/bin/etcd` bound to 127.0.0.1 on free ports, its client `.endpoint`, and controls to
stop (SIGTERM), kill (SIGKILL), pause/resume (SIGSTOP/SIGCONT) and start again on the same ports and data
dir. `EtcdCluster` runs several such members as one cluster (distinct ports, one data dir each). Only the process this object started is ever signalled, by its PID. Every process still running at
interpreter exit is SIGKILLed as a last resort, so a crashed test cannot leak a daemon.

Synchronous on purpose: usable from session-scoped pytest fixtures and from scripts without a loop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

ETCD_BIN = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL_BIN = shutil.which("etcdctl") or "/usr/bin/etcdctl"
OPENSSL_BIN = shutil.which("openssl") or "/usr/bin/openssl"

ROOT_USER = "root"

# PIDs started by this module and not yet reaped; killed at exit if a test forgot to.
_LIVE: dict[int, subprocess.Popen[bytes]] = {}


def _kill_leftovers() -> None:
    for proc in list(_LIVE.values()):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
    _LIVE.clear()


atexit.register(_kill_leftovers)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (tiny race until the daemon binds it; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


_CA_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = calico-test-ca
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


def make_test_pki(directory: str | Path) -> TLSFiles:
    """Create a CA plus a server cert (SAN 127.0.0.1/localhost) and a client cert, via the openssl CLI.

    EC P-256 keys keep generation to a few milliseconds; certificates are valid for two days."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.cnf").write_text(_CA_CONFIG)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([OPENSSL_BIN, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-new", "-config", "ca.cnf", "-extensions", "v3_ca", *ec,
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2")
    leaves = {
        "server": ("etcd-server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "extendedKeyUsage=serverAuth,clientAuth\n"),
        "client": ("calico-test-client", "extendedKeyUsage=clientAuth\n"),
    }
    for name, (cn, ext) in leaves.items():
        (d / f"{name}.ext").write_text("keyUsage=critical,digitalSignature,keyEncipherment\n" + ext)
        run("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return TLSFiles(
        ca_cert=str(d / "ca.crt"),
        server_cert=str(d / "server.crt"),
        server_key=str(d / "server.key"),
        client_cert=str(d / "client.crt"),
        client_key=str(d / "client.key"),
    )


class _Started:
    """`with X(...) as x:` starts it and kills it at the end, also on failure."""

    def start(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


class EtcdServer(_Started):
    """One etcd member on 127.0.0.1; see the module docstring. Use as a context manager or call
    start()/kill() yourself (in a `finally`)."""

    def __init__(
        self,
        tmp_dir: str | Path,
        *,
        tls: bool = False,
        auth: bool = False,
        root_password: str = "calico-test-pw",
        name: str = "calico-test",
    ) -> None:
        self.tmp_dir = Path(tmp_dir)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.tmp_dir / "etcd-data"
        self.log_path = self.tmp_dir / "etcd.log"
        self.name = name
        self.auth = auth
        self.root_password = root_password
        self.tls: TLSFiles | None = make_test_pki(self.tmp_dir / "pki") if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.initial_cluster: str | None = None  # set by EtcdCluster; None: a cluster of one
        self._pick_ports()
        self._auth_done = False

    def _pick_ports(self) -> None:
        self.client_port = free_port()
        self.peer_port = free_port()
        self.metrics_port = free_port()

    # --- addresses -----------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def connect_kwargs(self) -> dict[str, str]:
        """Keyword arguments for `EtcdKV.connect` that authenticate as root / with the client cert."""
        kw: dict[str, str] = {}
        if self.tls:
            kw |= {"ca_cert": self.tls.ca_cert, "cert": self.tls.client_cert, "key": self.tls.client_key}
        if self.auth:
            kw |= {"username": ROOT_USER, "password": self.root_password}
        return kw

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def _command(self) -> list[str]:
        peer = self.peer_url
        cmd = [
            ETCD_BIN,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self.initial_cluster or f"{self.name}={peer}",
            "--initial-cluster-state", "new",
            "--listen-metrics-urls", f"http://127.0.0.1:{self.metrics_port}",
            # Fast election (~0.1 s start-up) and a 1 s minimum lease TTL instead of 2 s.
            "--heartbeat-interval", "10",
            "--election-timeout", "100",
            "--logger", "zap",
            "--log-level", "warn",
        ]
        if self.tls:
            cmd += [
                "--cert-file", self.tls.server_cert,
                "--key-file", self.tls.server_key,
                "--trusted-ca-file", self.tls.ca_cert,
                "--client-cert-auth",
            ]
        return cmd

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart, same ports and data dir) and block until /health says true."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("etcd already running")
        first_start = not self.data_dir.exists()
        for attempt in range(3):
            self._spawn()
            try:
                self._wait_healthy(timeout)
                break
            except _EarlyExit:
                # Most likely a port grabbed by someone else between free_port() and bind: new ports
                # (only when the data dir is fresh, since a restart must keep its URLs).
                if not first_start or attempt == 2:
                    raise
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self._pick_ports()
            except BaseException:
                self.kill()
                raise
        if self.auth and not self._auth_done:
            self._enable_auth()

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the test run must not race our own cleanup
            )
        finally:
            log.close()
        _LIVE[self.proc.pid] = self.proc

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.metrics_port}/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._reap()
                raise _EarlyExit(f"etcd exited during start-up; log tail:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if b'"health":"true"' in resp.read():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"etcd not healthy after {timeout}s; log tail:\n{self.log_tail()}")

    def _enable_auth(self) -> None:
        self.etcdctl("user", "add", f"{ROOT_USER}:{self.root_password}", authenticate=False)
        self.etcdctl("user", "grant-role", ROOT_USER, "root", authenticate=False)
        self.etcdctl("auth", "enable", authenticate=False)
        self._auth_done = True

    def etcdctl(self, *args: str, authenticate: bool = True, timeout: float = 20.0) -> str:
        """Run etcdctl against this server (as root when auth is on); returns stdout, raises on error."""
        cmd = [ETCDCTL_BIN, f"--endpoints={self.endpoint}", "--command-timeout=10s"]
        if self.tls:
            cmd += [f"--cacert={self.tls.ca_cert}", f"--cert={self.tls.client_cert}",
                    f"--key={self.tls.client_key}"]
        if self.auth and authenticate and self._auth_done:
            cmd += [f"--user={ROOT_USER}:{self.root_password}"]
        env = {**os.environ, "ETCDCTL_API": "3"}
        res = subprocess.run([*cmd, *args], capture_output=True, env=env, timeout=timeout, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {res.stderr.decode(errors='replace')}")
        return res.stdout.decode()

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: SIGTERM, wait; SIGKILL if it does not exit in `timeout` s."""
        if self.proc is None:
            return
        self._signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """Abrupt stop: SIGKILL and reap. Safe to call when not running."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self._reap()

    def pause(self) -> None:
        """SIGSTOP: the TCP connections stay open but nothing answers (a hung server)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def _reap(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is not None:
            _LIVE.pop(self.proc.pid, None)
            self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

class _EarlyExit(RuntimeError):
    pass


class EtcdCluster(_Started):
    """`size` members on 127.0.0.1 forming one cluster. Members start together (none is healthy before a leader
    is elected); each can then be killed and started again by itself. Use as a context manager."""

    def __init__(self, tmp_dir: str | Path, size: int = 3) -> None:
        self.members = [EtcdServer(Path(tmp_dir) / f"member{i}", name=f"member{i}") for i in range(size)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = cluster

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30.0) -> None:
        try:
            for m in self.members:
                m._spawn()
            for m in self.members:
                m._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        for m in self.members:
            m.kill()

"""The lab's OpenStack controller: MariaDB and the real Neutron API server (uWSGI) with the `calico` driver.

Enters: a lab (its datastore). Leaves: a MariaDB server (own data dir, a Unix socket only), Neutron's database
migrated by `neutron-db-manage`, the API application `neutron.wsgi.api:application` served by uWSGI on
127.0.0.1 (auth `noauth`, ML2 with `mechanism_drivers = calico`, `type_drivers = local,flat`, oslo.messaging's
`fake:/` transport), their PIDs in the lab state and their files under `<lab>/openstack/`.
Neutron runs from its own virtual environment (`.venv-openstack` beside calico's, or `CALICO_OPENSTACK_VENV`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from calico.lab import daemons
from calico.lab.netns import LabError, exec_argv

DB_MARKER = "mariadbd"
DHCP_MARKER = "calico-dhcp-agent"
API_MARKER = "neutron.wsgi.api"


@dataclass
class OpenStack:
    dir: str
    venv: str
    api_port: int = 0
    db_pid: int = 0
    api_pid: int = 0
    dhcp_pids: dict[str, int] = field(default_factory=dict)  # host → its calico-dhcp-agent

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def socket(self) -> str:
        return str(Path(self.dir) / "mysql.sock")


def venv() -> Path:
    """Neutron's virtual environment: `CALICO_OPENSTACK_VENV`, else `.venv-openstack` beside calico's venv."""
    path = Path(os.environ.get("CALICO_OPENSTACK_VENV") or Path(sys.prefix).parent / ".venv-openstack")
    if not (path / "bin" / "uwsgi").exists():
        raise LabError(f"no Neutron environment at {path} (run `make setup`, or set CALICO_OPENSTACK_VENV)")
    return path


def neutron_conf(os_state: OpenStack, paste: Path) -> str:
    return f"""[DEFAULT]
api_paste_config = {paste}
core_plugin = ml2
service_plugins = router
auth_strategy = noauth
transport_url = fake:/
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
state_path = {os_state.dir}/state
log_file = {os_state.dir}/neutron.log

[database]
connection = mysql+pymysql://root@localhost/neutron?unix_socket={os_state.socket}

[oslo_concurrency]
lock_path = {os_state.dir}/lock
"""


def ml2_conf(ds_env: dict[str, str]) -> str:
    calico = [f"datastore_type = {ds_env['DATASTORE_TYPE']}"]
    if ds_env.get("ETCD_ENDPOINTS"):
        calico.append(f"etcd_endpoints = {ds_env['ETCD_ENDPOINTS']}")
    if ds_env.get("CALICO_EMBEDDED_PATH"):
        calico.append(f"embedded_path = {ds_env['CALICO_EMBEDDED_PATH']}")
    return "\n".join([
        "[ml2]", "type_drivers = local,flat", "tenant_network_types = local", "mechanism_drivers = calico",
        "extension_drivers = port_security", "", "[ml2_type_flat]", "flat_networks = *", "",
        "[securitygroup]", "enable_security_group = true", "", "[calico]", *calico, "",
    ])


def _run(argv: list[str], log: Path, what: str, timeout: float = 120, env: dict[str, str] | None = None) -> None:
    with open(log, "ab") as out:
        res = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, env=env)
    if res.returncode != 0:
        raise LabError(f"{what} failed (exit {res.returncode}); see {log}")


def _wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise LabError(f"{what} not ready within {timeout:.0f}s")


def up(lab_dir: Path, datastore: dict[str, str]) -> OpenStack:
    """Start MariaDB and the Neutron API; on failure stop whatever was started and raise."""
    env_dir = venv()
    d = lab_dir / "openstack"
    shutil.rmtree(d, ignore_errors=True)
    for sub in ("db", "state", "lock"):
        (d / sub).mkdir(parents=True)
    st = OpenStack(dir=str(d), venv=str(env_dir))
    try:
        _run(["mariadb-install-db", "--no-defaults", f"--datadir={d / 'db'}", "--user=root", "--skip-test-db",
              "--auth-root-authentication-method=normal"], d / "mariadb-install.log", "mariadb-install-db")
        st.db_pid = daemons.spawn(["mariadbd", "--no-defaults", f"--datadir={d / 'db'}", f"--socket={st.socket}",
                                   "--skip-networking", f"--pid-file={d / 'mariadb.pid'}", "--user=root",
                                   f"--log-error={d / 'mariadb.err'}"], d / "mariadb.log")
        _wait(lambda: Path(st.socket).exists(), 30, "MariaDB")
        _run(["mariadb", "--no-defaults", "-S", st.socket, "-u", "root", "-e", "CREATE DATABASE neutron"],
             d / "mariadb.log", "creating Neutron's database")
        paste = d / "api-paste.ini"
        shutil.copy(env_dir / "etc" / "neutron" / "api-paste.ini", paste)
        (d / "neutron.conf").write_text(neutron_conf(st, paste))
        (d / "ml2_conf.ini").write_text(ml2_conf(datastore))
        confs = ["--config-file", str(d / "neutron.conf"), "--config-file", str(d / "ml2_conf.ini")]
        _run([str(env_dir / "bin" / "neutron-db-manage"), *confs, "upgrade", "heads"], d / "migrate.log",
             "neutron-db-manage upgrade heads", timeout=300)
        st.api_port = daemons.free_port()
        env = {**os.environ, "OS_NEUTRON_CONFIG_DIR": str(d),
               "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"}
        # --http11-socket: the openstack CLI keeps its connection alive between requests.
        st.api_pid = daemons.spawn([str(env_dir / "bin" / "uwsgi"), "--http11-socket", f"127.0.0.1:{st.api_port}",
                                    "--module", "neutron.wsgi.api:application", "--master", "--processes", "1",
                                    "--threads", "4", "--need-app", "--die-on-term", "--lazy-apps",
                                    "--chdir", str(d)], d / "uwsgi.log", env=env)
        daemons.wait_http(st.endpoint + "/", 60, "the Neutron API server")
        (d / "bin").mkdir()
        (d / "bin" / "openstack").symlink_to(env_dir / "bin" / "openstack")
    except BaseException:
        down(st)
        raise
    return st


def start_dhcp_agents(st: OpenStack, hosts: dict[str, tuple[str, Path]], ds_env: dict[str, str], mtu: int) -> None:
    """One `calico-dhcp-agent` per compute host (name → (netns, its directory)), inside the host's namespace."""
    agent = str(Path(sys.executable).parent / "calico-dhcp-agent")
    for name, (netns, host_dir) in hosts.items():
        # dnsmasq as root: the lab's directories may be private to root (a test's temporary directory)
        argv = exec_argv(netns, [agent, "--hostname", name, "--state-dir", str(host_dir / "dhcp"), "--mtu", str(mtu),
                                 "--dnsmasq-user", "root"])
        st.dhcp_pids[name] = daemons.spawn(argv, host_dir / "dhcp-agent.log", env={**os.environ, **ds_env})


def down(st: OpenStack) -> None:
    for pid in st.dhcp_pids.values():
        daemons.stop(pid, DHCP_MARKER, timeout=10)
    daemons.stop(st.api_pid, API_MARKER, timeout=10)
    daemons.stop(st.db_pid, DB_MARKER, timeout=20)


def client_env(st: OpenStack) -> dict[str, str]:
    """What the unmodified `openstack` CLI needs to talk to this Neutron, and where it is (a directory with only
    `openstack` in it goes first on the PATH, so the venv's python does not shadow the user's)."""
    return {"OS_AUTH_TYPE": "none", "OS_ENDPOINT": st.endpoint,
            "PATH": f"{Path(st.dir) / 'bin'}:{os.environ.get('PATH', '')}"}

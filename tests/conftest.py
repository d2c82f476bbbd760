"""Shared pytest fixtures.

* `root_namespace_guard` (session, autouse): snapshots the root network namespace (nft ruleset, routes, link
  names, forwarding/rp_filter sysctls) before the whole suite and fails the run if anything changed, or if
  the machine's MTU file (Felix's default path) was written; every Felix inherits FELIX_MTUFILEPATH in a
  temporary directory.

* `etcd_server` (session): one plain-HTTP etcd on 127.0.0.1 for the whole run, started on first use
  (so runs that never touch etcd never start it); killed at the end, also on failure.
* `etcd_factory` (function): `etcd_factory(tls=..., auth=...)` starts a private etcd (for TLS/auth,
  kill/restart tests); every server it made is SIGKILLed when the test ends.
* `kv` (function, parametrized "embedded" / "etcd"): a fresh, empty `KVStore`.
  embedded: a new SQLite file under `tmp_path`. etcd: a new client to `etcd_server`, whose whole keyspace
  is wiped first (`delete_prefix("")`). Revisions keep growing across tests and leases of earlier tests
  may still be alive, so tests must only compare revisions they obtained themselves.
  Select one backend with `-k embedded` or `-k etcd`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.etcd import EtcdKV
from calico.datastore.kv import KVStore
from tests.helpers.etcd_server import ETCD_BIN, EtcdServer
from tests.helpers.root_guard import RootSnapshot

MACHINE_MTU_FILE = Path("/var/lib/calico/mtu")  # Felix's default MTUFilePath: the machine's, never a test's


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino


@pytest.fixture(scope="session", autouse=True)
def root_namespace_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Every Felix a test starts inherits this unless it names its own file.
    os.environ.setdefault("FELIX_MTUFILEPATH", str(tmp_path_factory.mktemp("felix") / "mtu"))
    before, mtu_before = RootSnapshot.take(), _stat(MACHINE_MTU_FILE)
    yield
    problems = before.diff(RootSnapshot.take())
    if _stat(MACHINE_MTU_FILE) != mtu_before:
        problems.append(f"{MACHINE_MTU_FILE} was written")
    assert not problems, "the test suite changed the root network namespace:\n" + "\n".join(problems)


def _require_etcd() -> None:
    if not shutil.which(ETCD_BIN):
        pytest.skip(f"etcd binary not found at {ETCD_BIN}")


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    _require_etcd()
    server = EtcdServer(tmp_path_factory.mktemp("etcd-shared"))
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture
def etcd_factory(tmp_path: Path) -> Iterator[Callable[..., EtcdServer]]:
    _require_etcd()
    servers: list[EtcdServer] = []

    def make(*, tls: bool = False, auth: bool = False) -> EtcdServer:
        server = EtcdServer(tmp_path / f"etcd-{len(servers)}", tls=tls, auth=auth)
        servers.append(server)  # registered before start() so a half-started one is killed too
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.kill()


@pytest.fixture(params=["embedded", "etcd"])
async def kv(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KVStore]:
    store: EmbeddedKV | EtcdKV
    if request.param == "embedded":
        store = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        store = await EtcdKV.connect([server.endpoint])
    try:
        if isinstance(store, EtcdKV):
            await store.delete_prefix("")
        yield store
    finally:
        await store.close()

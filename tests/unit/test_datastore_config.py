"""Datastore selection: CalicoAPIConfig files, calicoctl's environment variables, precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from calico.datastore import config as c


def test_env_etcd_with_tls_and_auth() -> None:
    cfg = c.from_env(
        {
            "DATASTORE_TYPE": "etcdv3",
            "ETCD_ENDPOINTS": "https://127.0.0.1:2379, https://127.0.0.2:2379",
            "ETCD_CA_CERT_FILE": "/ca.pem",
            "ETCD_CERT_FILE": "/c.pem",
            "ETCD_KEY_FILE": "/k.pem",
            "ETCD_USERNAME": "root",
            "ETCD_PASSWORD": "pw",
        }
    )
    assert cfg.datastore_type == "etcdv3"
    assert cfg.etcd_endpoints == ["https://127.0.0.1:2379", "https://127.0.0.2:2379"]
    assert (cfg.etcd_ca_cert_file, cfg.etcd_cert_file, cfg.etcd_key_file) == ("/ca.pem", "/c.pem", "/k.pem")
    assert (cfg.etcd_username, cfg.etcd_password) == ("root", "pw")


def test_endpoints_alone_imply_etcd() -> None:
    assert c.from_env({"ETCD_ENDPOINTS": "http://127.0.0.1:2379"}).datastore_type == "etcdv3"


def test_default_is_embedded(tmp_path: Path) -> None:
    cfg = c.from_env({"CALICO_EMBEDDED_PATH": str(tmp_path / "x.db")})
    assert cfg.datastore_type == "embedded" and cfg.embedded_path == str(tmp_path / "x.db")
    assert c.from_env({}).embedded_path == c.DEFAULT_EMBEDDED_PATH


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"DATASTORE_TYPE": "kubernetes"}, "datastoreType 'kubernetes'"),
        ({"DATASTORE_TYPE": "etcdv3"}, "needs etcdEndpoints"),
        ({"ETCD_ENDPOINTS": "127.0.0.1:2379"}, "must start with http"),
        ({"ETCD_ENDPOINTS": "http://a:1", "ETCD_CERT_FILE": "/c"}, "together"),
        ({"ETCD_ENDPOINTS": "http://a:1", "ETCD_PASSWORD": "x"}, "without etcdUsername"),
    ],
)
def test_bad_env_is_named(env: dict[str, str], needle: str) -> None:
    with pytest.raises(c.ConfigError, match=needle):
        c.from_env(env)


def test_config_file(tmp_path: Path) -> None:
    f = tmp_path / "calicoctl.cfg"
    f.write_text(
        "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata: {}\n"
        "spec:\n  datastoreType: etcdv3\n  etcdEndpoints: http://127.0.0.1:2379\n"
    )
    cfg = c.resolve(str(f), env={"DATASTORE_TYPE": "embedded"})  # the file wins over the environment
    assert cfg.datastore_type == "etcdv3" and cfg.etcd_endpoints == ["http://127.0.0.1:2379"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("kind: Other\n", "expected kind: CalicoAPIConfig"),
        ("kind: CalicoAPIConfig\nspec:\n  etcdEndpoint: http://x:1\n", "unknown field.*etcdEndpoint"),
        ("kind: CalicoAPIConfig\nspec: [1]\n", "spec must be a mapping"),
        ("kind: [\n", "invalid YAML"),
    ],
)
def test_bad_config_file(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.cfg"
    f.write_text(text)
    with pytest.raises(c.ConfigError, match=needle):
        c.from_file(str(f))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(c.ConfigError, match="No such file"):
        c.from_file(str(tmp_path / "nope"))

"""Which datastore to use: from a `CalicoAPIConfig` file or the environment, to an open `KVStore`.

Enters: a config file path and/or environment variables (calicoctl's names). Leaves: `DatastoreConfig`,
and `open_kv()` which connects the chosen backend.

Precedence: `--config FILE` when given, else the environment when `DATASTORE_TYPE` or `ETCD_ENDPOINTS` is
set, else `/etc/calico/calicoctl.cfg` when it exists, else the embedded store at `CALICO_EMBEDDED_PATH`
(default `/var/lib/calico/calico.db`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from calico.datastore.kv import KVStore

DEFAULT_CONFIG_FILE = "/etc/calico/calicoctl.cfg"
DEFAULT_EMBEDDED_PATH = "/var/lib/calico/calico.db"

# CalicoAPIConfig spec field -> environment variable, as calicoctl names them.
_SPEC_TO_ENV = {
    "datastoreType": "DATASTORE_TYPE",
    "etcdEndpoints": "ETCD_ENDPOINTS",
    "etcdCACertFile": "ETCD_CA_CERT_FILE",
    "etcdCertFile": "ETCD_CERT_FILE",
    "etcdKeyFile": "ETCD_KEY_FILE",
    "etcdUsername": "ETCD_USERNAME",
    "etcdPassword": "ETCD_PASSWORD",
    "embeddedPath": "CALICO_EMBEDDED_PATH",
}
DATASTORE_TYPES = ("etcdv3", "embedded")


class ConfigError(ValueError):
    """The datastore configuration is unusable; the message names the file or variable."""


@dataclass(frozen=True)
class DatastoreConfig:
    datastore_type: str = "embedded"
    etcd_endpoints: list[str] = field(default_factory=list)
    etcd_ca_cert_file: str | None = None
    etcd_cert_file: str | None = None
    etcd_key_file: str | None = None
    etcd_username: str | None = None
    etcd_password: str | None = None
    embedded_path: str = DEFAULT_EMBEDDED_PATH

    def describe(self) -> str:
        if self.datastore_type == "etcdv3":
            return f"etcdv3 at {','.join(self.etcd_endpoints)}"
        return f"embedded store at {self.embedded_path}"


def _from_settings(settings: Mapping[str, str | None], origin: str) -> DatastoreConfig:
    dtype = (settings.get("datastoreType") or "").strip() or (
        "etcdv3" if settings.get("etcdEndpoints") else "embedded"
    )
    if dtype not in DATASTORE_TYPES:
        raise ConfigError(f"{origin}: datastoreType {dtype!r} is not one of {', '.join(DATASTORE_TYPES)}")
    endpoints = [e.strip() for e in (settings.get("etcdEndpoints") or "").split(",") if e.strip()]
    if dtype == "etcdv3" and not endpoints:
        raise ConfigError(f"{origin}: datastoreType etcdv3 needs etcdEndpoints (ETCD_ENDPOINTS)")
    for ep in endpoints:
        if not ep.startswith(("http://", "https://")):
            raise ConfigError(f"{origin}: etcd endpoint {ep!r} must start with http:// or https://")
    cert, key = settings.get("etcdCertFile") or None, settings.get("etcdKeyFile") or None
    if bool(cert) != bool(key):
        raise ConfigError(f"{origin}: etcdCertFile and etcdKeyFile must be given together")
    user, password = settings.get("etcdUsername") or None, settings.get("etcdPassword") or None
    if password and not user:
        raise ConfigError(f"{origin}: etcdPassword given without etcdUsername")
    return DatastoreConfig(
        datastore_type=dtype,
        etcd_endpoints=endpoints,
        etcd_ca_cert_file=settings.get("etcdCACertFile") or None,
        etcd_cert_file=cert,
        etcd_key_file=key,
        etcd_username=user,
        etcd_password=password,
        embedded_path=settings.get("embeddedPath") or DEFAULT_EMBEDDED_PATH,
    )


def from_env(env: Mapping[str, str]) -> DatastoreConfig:
    settings = {spec: env.get(var) for spec, var in _SPEC_TO_ENV.items()}
    return _from_settings(settings, "environment")


def from_file(path: str) -> DatastoreConfig:
    import yaml  # late: calico-felix imports this module but rarely reads a config file (PyYAML ~8 ms)

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: invalid YAML: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "CalicoAPIConfig":
        raise ConfigError(f"config file {path}: expected kind: CalicoAPIConfig")
    spec = doc.get("spec") or {}
    if not isinstance(spec, dict):
        raise ConfigError(f"config file {path}: spec must be a mapping")
    unknown = sorted(set(spec) - set(_SPEC_TO_ENV))
    if unknown:
        raise ConfigError(f"config file {path}: spec: unknown field(s) {', '.join(unknown)}")
    return _from_settings({k: None if v is None else str(v) for k, v in spec.items()}, f"config file {path}")


def resolve(config_file: str | None = None, env: Mapping[str, str] | None = None) -> DatastoreConfig:
    """Apply the documented precedence (module docstring)."""
    env = os.environ if env is None else env
    if config_file:
        return from_file(config_file)
    if env.get("DATASTORE_TYPE") or env.get("ETCD_ENDPOINTS") or env.get("CALICO_EMBEDDED_PATH"):
        return from_env(env)
    if Path(DEFAULT_CONFIG_FILE).exists():
        return from_file(DEFAULT_CONFIG_FILE)
    return from_env(env)


async def open_kv(cfg: DatastoreConfig) -> KVStore:
    """Connect the configured backend (imports lazily: the etcd client costs ~0.2 s to import)."""
    if cfg.datastore_type == "etcdv3":
        from calico.datastore.etcd import EtcdKV

        return await EtcdKV.connect(
            cfg.etcd_endpoints,
            ca_cert=cfg.etcd_ca_cert_file,
            cert=cfg.etcd_cert_file,
            key=cfg.etcd_key_file,
            username=cfg.etcd_username,
            password=cfg.etcd_password,
        )
    from calico.datastore.embedded import EmbeddedKV

    Path(cfg.embedded_path).parent.mkdir(parents=True, exist_ok=True)
    return await EmbeddedKV.open(cfg.embedded_path)

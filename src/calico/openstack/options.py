"""The `[calico]` options of Neutron's configuration, and the datastore they name.

Enters: oslo.config's CONF (inside Neutron). Leaves: a `DatastoreConfig` and the driver's settings. Options
not given fall back to calicoctl's sources (`/etc/calico/calicoctl.cfg`, `DATASTORE_TYPE`, `ETCD_ENDPOINTS`).
"""

from __future__ import annotations

import os
from typing import Any

from oslo_config import cfg

from calico.datastore.config import DatastoreConfig, from_env, resolve

GROUP = "calico"
OPTIONS = [
    cfg.StrOpt("datastore_type", help="etcdv3 or embedded (default: calicoctl's configuration)"),
    cfg.ListOpt("etcd_endpoints", default=[], help="etcd client URLs, e.g. http://127.0.0.1:2379"),
    cfg.StrOpt("etcd_ca_cert_file"),
    cfg.StrOpt("etcd_cert_file"),
    cfg.StrOpt("etcd_key_file"),
    cfg.StrOpt("embedded_path", help="the embedded store's file"),
    cfg.StrOpt("openstack_region", default="no-region", help="Felix's OpenstackRegion (status keys)"),
    cfg.IntOpt("resync_interval", default=60, help="seconds between full resyncs (0: only at start)"),
    cfg.IntOpt("election_ttl", default=10, help="seconds a dead leader's lease lasts"),
    cfg.StrOpt("metadata_addr", default="127.0.0.1", help="where Felix DNATs 169.254.169.254:80 ('none': off)"),
    cfg.IntOpt("metadata_port", default=8775),
    cfg.BoolOpt("require_felix_alive", default=True, help="bind ports only on hosts whose Felix reports"),
]


def register(conf: Any = cfg.CONF) -> None:
    conf.register_opts(OPTIONS, GROUP)


def datastore_config(conf: Any = cfg.CONF) -> DatastoreConfig:
    group = conf[GROUP]
    env: dict[str, str] = {}
    if group.datastore_type:
        env["DATASTORE_TYPE"] = group.datastore_type
    if group.etcd_endpoints:
        env["ETCD_ENDPOINTS"] = ",".join(group.etcd_endpoints)
    for opt, var in (("etcd_ca_cert_file", "ETCD_CA_CERT_FILE"), ("etcd_cert_file", "ETCD_CERT_FILE"),
                     ("etcd_key_file", "ETCD_KEY_FILE"), ("embedded_path", "CALICO_EMBEDDED_PATH")):
        if group[opt]:
            env[var] = group[opt]
    return from_env(env) if env else resolve(env=dict(os.environ))

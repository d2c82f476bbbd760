"""Which endpoint an address belongs to, for naming the two ends of a flow.

In: datastore updates of WorkloadEndpoints and HostEndpoints (key, JSON value or None), as Felix's syncer
delivers them (cluster-wide: a flow's other end is often on another host). Out: `lookup(ip)` -> the
`records.Endpoint` (type, namespace, name, labels) holding that address, or `records.NET`. A value that does not
parse is logged and its key forgotten (nothing else changes). Pure (logging aside).

Names as Calico's flow logs give them: a workload endpoint by its pod (or workload) name in its namespace, a
host endpoint by its resource name. Labels are the resource's own (with `projectcalico.org/namespace` for
workloads, as Calico adds it).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from calico.datastore.keys import parse_key
from calico.flowlogs.records import NET, Endpoint

log = logging.getLogger(__name__)

PLURALS = ("workloadendpoints", "hostendpoints")


def _address(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return str(ipaddress.ip_interface(text.strip()).ip)
    except ValueError:
        return None


class EndpointIndex:
    def __init__(self) -> None:
        self._by_ip: dict[str, Endpoint] = {}
        self._ips_of: dict[str, tuple[str, ...]] = {}  # key -> its addresses

    def __len__(self) -> int:
        return len(self._ips_of)

    def update(self, key: str, value: bytes | None) -> None:
        """A WorkloadEndpoint or HostEndpoint key changed (other keys are ignored)."""
        parsed = parse_key(key)
        if parsed is None or parsed.plural not in PLURALS:
            return
        for ip in self._ips_of.pop(key, ()):
            self._by_ip.pop(ip, None)
        if value is None:
            return
        try:
            doc = json.loads(value)
            meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
            labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
            if parsed.plural == "workloadendpoints":
                ns = parsed.namespace or str(meta.get("namespace") or "")
                name = str(spec.get("pod") or spec.get("workload") or parsed.name)
                ep = Endpoint("wep", ns, name, {**labels, "projectcalico.org/namespace": ns})
                raw = spec.get("ipNetworks") or []
            else:
                ep = Endpoint("hep", "", parsed.name, labels)
                raw = spec.get("expectedIPs") or []
        except (ValueError, AttributeError, TypeError) as e:
            log.warning("flow logs: cannot read %s (%s); its addresses are not named", key, e)
            return
        ips = tuple(ip for ip in (_address(r) for r in raw) if ip is not None)
        self._ips_of[key] = ips
        for ip in ips:
            self._by_ip[ip] = ep

    def lookup(self, ip: str) -> Endpoint:
        return self._by_ip.get(ip, NET)

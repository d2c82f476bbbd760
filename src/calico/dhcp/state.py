"""The agent's view of the datastore, folded from syncer updates (pure).

In: `calico.datastore.syncer.Update`s under `AgentState.prefixes()`: the region's subnet records and the
WorkloadEndpoints of namespace `openstack`. Out: `subnets` (subnet id → `SubnetRecord`) and `hosts` (endpoint
name → `DhcpHost`: MAC and addresses of an `openstack` endpoint on this node), and, per batch, which of the
two changed.

Bad data never raises: a record or endpoint that does not decode is logged with its key and the reason and
counts as absent (a deletion), so one bad key never stops DHCP for the others. Endpoints of other nodes are
dropped after a cheap look at `spec.node`, before full validation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from calico.datastore.keys import dhcp_subnet_prefix, kind_prefix, parse_key
from calico.datastore.kv import KeyValue
from calico.datastore.store import decode
from calico.datastore.syncer import Update
from calico.resources import ResourceError, WorkloadEndpoint
from calico.resources.dhcp import SubnetRecord, SubnetRecordError

__all__ = ["ORCHESTRATOR", "AgentState", "Changes", "DhcpHost"]

log = logging.getLogger(__name__)

ORCHESTRATOR = "openstack"  # the driver's orchestrator and namespace (calico.openstack.names)
_WEP_PLURAL = "workloadendpoints"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DhcpHost:
    """One local endpoint as DHCP sees it: its MAC and its fixed addresses (no prefix length)."""

    name: str
    mac: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Changes:
    subnets: bool = False
    hosts: bool = False

    def __or__(self, other: Changes) -> Changes:
        return Changes(self.subnets or other.subnets, self.hosts or other.hosts)


class AgentState:
    def __init__(self, hostname: str, region: str) -> None:
        self.hostname = hostname
        self.subnet_prefix = dhcp_subnet_prefix(region)
        self.endpoint_prefix = kind_prefix(_WEP_PLURAL, ORCHESTRATOR)
        self.subnets: dict[str, SubnetRecord] = {}
        self.hosts: dict[str, DhcpHost] = {}

    def prefixes(self) -> list[str]:
        return [self.subnet_prefix, self.endpoint_prefix]

    def apply(self, updates: Iterable[Update]) -> Changes:
        """Fold a batch in; says which part changed."""
        changes = Changes()
        for up in updates:
            if up.key.startswith(self.subnet_prefix):
                changes |= Changes(subnets=self._subnet(up))
            elif up.key.startswith(self.endpoint_prefix):
                changes |= Changes(hosts=self._endpoint(up))
        return changes

    def _subnet(self, up: Update) -> bool:
        subnet_id = up.key[len(self.subnet_prefix):]
        record = None
        if up.value is not None:
            if not subnet_id or "/" in subnet_id:
                log.warning("ignoring %s: not a subnet record key", up.key)
                return False
            try:
                record = SubnetRecord.from_json(up.key, up.value)
            except SubnetRecordError as e:
                log.warning("ignoring bad subnet record: %s", e)
        return _put(self.subnets, subnet_id, record)

    def _endpoint(self, up: Update) -> bool:
        key = parse_key(up.key)
        name = key.name if key is not None else up.key
        host = None if up.value is None else self._local_host(up)
        return _put(self.hosts, name, host)

    def _local_host(self, up: Update) -> DhcpHost | None:
        assert up.value is not None
        try:
            spec = json.loads(up.value).get("spec") or {}
            if spec.get("node") != self.hostname or spec.get("orchestrator") != ORCHESTRATOR:
                return None
        except (ValueError, AttributeError):
            pass  # decode() below says what is wrong with it
        try:
            wep = decode(KeyValue(up.key, up.value, 0, up.revision))
        except (ResourceError, ValueError) as e:
            log.warning("ignoring bad WorkloadEndpoint at %s: %s", up.key, e)
            return None
        if not isinstance(wep, WorkloadEndpoint):
            log.warning("ignoring %s: the value is a %s, not a WorkloadEndpoint", up.key, wep.KIND)
            return None
        spec = wep.spec
        if spec.node != self.hostname or spec.orchestrator != ORCHESTRATOR or not spec.mac:
            return None
        addresses = tuple(net.partition("/")[0] for net in spec.ipNetworks or ())
        return DhcpHost(wep.metadata.name, spec.mac.lower(), addresses)


def _put(table: dict[str, T], key: str, value: T | None) -> bool:
    """Set or (value None) remove; True when that changed the table."""
    if value is None:
        return table.pop(key, None) is not None
    if table.get(key) == value:
        return False
    table[key] = value
    return True

"""Endpoints and network sets: resources in; effective labels, IP set items and local endpoints out.

Enters (`EndpointTracker`): WorkloadEndpoint, HostEndpoint, NetworkSet and GlobalNetworkSet changes of
the whole cluster, and profile `labelsToApply` (profiles are label parents; the `kns.<ns>` profile also
gives the namespace its labels).
Leaves:
  - to an `ItemSink` (IP set members), for every item of every node: its labels, parents, addresses and
    named ports;
  - to a `LocalEndpointSink` (the policy resolver), only for endpoints on this host (the *local endpoint
    filter*): the same labels and a `LocalWorkload` / `LocalHost` with what the dataplane needs to program
    the interface (for workloads also their 1:1 NATs, `spec.ipNATs`, split by family);
  - parent label changes to both.

Effective labels (what selectors see), built here and merged by the label indexes:
  own labels, minus the reserved `pcns.`/`pcsa.` prefixes and `projectcalico.org/namespace`, which only
  Calico sets; plus for namespaced items `projectcalico.org/namespace: <ns>` and
  `pcns.projectcalico.org/name: <ns>`; for workloads `projectcalico.org/orchestrator` (from
  spec.orchestrator) and `projectcalico.org/serviceaccount` / `pcsa.projectcalico.org/name` (from
  spec.serviceAccountName). Parents, earliest winning, own labels winning over all: the namespace
  (`namespace_parent`, whose labels are the `kns.<ns>` profile's labelsToApply with `pcns.` prefixed where
  missing) and then the endpoint's profiles in order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Protocol

from calico.calculation.events import NATInfo, WorkloadEndpointID
from calico.calculation.selectors import (
    NS_LABEL,
    NS_NAME_LABEL,
    NS_PREFIX,
    ORCH_LABEL,
    SA_LABEL,
    SA_NAME_LABEL,
    SA_PREFIX,
)
from calico.calculation.types import (
    EndpointKey,
    HostEndpointKey,
    ItemData,
    ItemKey,
    LocalHost,
    LocalInfo,
    LocalWorkload,
    NamedPort,
    NetworkSetKey,
    ParentKey,
    port_protocol,
)
from calico.resources import GlobalNetworkSet, HostEndpoint, NetworkSet, WorkloadEndpoint

__all__ = [
    "EndpointTracker",
    "ItemSink",
    "LocalEndpointSink",
    "item_id",
    "namespace_labels",
    "namespace_parent",
]

KNS_PREFIX = "kns."
_RESERVED_PREFIXES = (NS_PREFIX, SA_PREFIX)


class ItemSink(Protocol):
    """What the tracker feeds with every item of every node (`ipset_members.IPSetMembers`)."""

    def has_item(self, key: Hashable) -> bool: ...

    def update_item(
        self, key: Hashable, labels: Mapping[str, str], parents: Sequence[Hashable], data: ItemData
    ) -> None: ...

    def remove_item(self, key: Hashable) -> None: ...

    def update_parent(self, parent: Hashable, labels: Mapping[str, str] | None) -> None: ...


class LocalEndpointSink(Protocol):
    """What the tracker feeds with this host's endpoints only (`policy_resolver.PolicyResolver`)."""

    def update_endpoint(
        self, key: EndpointKey, info: LocalInfo, labels: Mapping[str, str], parents: Sequence[ParentKey]
    ) -> None: ...

    def remove_endpoint(self, key: EndpointKey) -> None: ...

    def update_parent(self, parent: ParentKey, labels: Mapping[str, str] | None) -> None: ...


def namespace_parent(namespace: str) -> str:
    """The label parent standing for a namespace (its labels arrive through the `kns.<ns>` profile)."""
    return sys.intern(f"namespace:{namespace}")


def item_id(key: ItemKey) -> str:
    """The IP set index's id for an item: a string, because the index hashes ids constantly and
    strings cache their hash (the dataclass keys would rehash their fields every time)."""
    if isinstance(key, WorkloadEndpointID):
        return f"wep:{key.namespace}/{key.name}"
    if isinstance(key, HostEndpointKey):
        return f"hep:{key.name}"
    return f"set:{key.namespace or ''}/{key.name}"


def _interned(labels: Mapping[str, str] | None) -> dict[str, str]:
    # Thousands of endpoints repeat the same few keys and values; share the strings.
    if not labels:
        return {}
    intern = sys.intern
    return {intern(k): intern(v) for k, v in labels.items() if not k.startswith(_RESERVED_PREFIXES) and k != NS_LABEL}


def namespace_labels(namespace: str, labels_to_apply: Mapping[str, str] | None) -> dict[str, str]:
    """A namespace's labels as its items inherit them: `pcns.`-prefixed (kept if already there)."""
    out = {k if k.startswith(NS_PREFIX) else NS_PREFIX + k: v for k, v in (labels_to_apply or {}).items()}
    out[NS_NAME_LABEL] = namespace
    return out


def _host_cidr(ip: str) -> str:
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def workload_labels(namespace: str, res: WorkloadEndpoint) -> tuple[dict[str, str], tuple[ParentKey, ...]]:
    spec = res.spec
    labels = _interned(res.metadata.labels)
    labels[NS_LABEL] = sys.intern(namespace)
    labels[NS_NAME_LABEL] = sys.intern(namespace)
    if spec.orchestrator:
        labels[ORCH_LABEL] = sys.intern(spec.orchestrator)
    if spec.serviceAccountName:
        labels[SA_LABEL] = sys.intern(spec.serviceAccountName)
        labels[SA_NAME_LABEL] = labels[SA_LABEL]
    parents: tuple[ParentKey, ...] = (namespace_parent(namespace), *(sys.intern(p) for p in spec.profiles or ()))
    return labels, parents


def workload_item(res: WorkloadEndpoint) -> ItemData:
    spec = res.spec
    ports: tuple[NamedPort, ...] = tuple(
        (p.name, port_protocol(p.protocol), p.port) for p in spec.ports or () if p.name is not None
    )
    return ItemData(tuple(spec.ipNetworks or ()), ports)


def workload_info(res: WorkloadEndpoint) -> LocalWorkload:
    spec = res.spec
    nets = spec.ipNetworks or ()
    # The resource checked each internalIP is one of ipNetworks and both sides are of one family.
    nats = tuple(NATInfo(n.externalIP, n.internalIP) for n in spec.ipNATs or ())
    return LocalWorkload(
        iface=spec.interfaceName,
        mac=spec.mac,
        ipv4_nets=tuple(n for n in nets if ":" not in n),
        ipv6_nets=tuple(n for n in nets if ":" in n),
        profile_ids=tuple(spec.profiles or ()),
        allow_spoofed_source_prefixes=tuple(spec.allowSpoofedSourcePrefixes or ()),
        ipv4_nats=tuple(n for n in nats if ":" not in n.external_ip),
        ipv6_nats=tuple(n for n in nats if ":" in n.external_ip),
    )


def host_labels(res: HostEndpoint) -> tuple[dict[str, str], tuple[ParentKey, ...]]:
    return _interned(res.metadata.labels), tuple(sys.intern(p) for p in res.spec.profiles or ())


def host_item(res: HostEndpoint) -> ItemData:
    spec = res.spec
    ports = tuple((p.name, port_protocol(p.protocol), p.port) for p in spec.ports or ())
    return ItemData(tuple(_host_cidr(ip) for ip in spec.expectedIPs or ()), ports)


def host_info(res: HostEndpoint) -> LocalHost:
    spec = res.spec
    return LocalHost(spec.interfaceName, tuple(spec.expectedIPs or ()), tuple(spec.profiles or ()))


def netset_labels(
    namespace: str | None, res: NetworkSet | GlobalNetworkSet
) -> tuple[dict[str, str], tuple[ParentKey, ...]]:
    labels = _interned(res.metadata.labels)
    if namespace is None:
        return labels, ()
    labels[NS_LABEL] = sys.intern(namespace)
    labels[NS_NAME_LABEL] = sys.intern(namespace)
    return labels, (namespace_parent(namespace),)


class EndpointTracker:
    """Fans endpoint, network set and profile-label changes out to IP sets and (local only) the resolver."""

    def __init__(self, hostname: str, members: ItemSink, resolver: LocalEndpointSink,
                 is_local: Callable[[str | None, EndpointKey], bool] | None = None) -> None:
        self.hostname = hostname
        # Felix: the endpoints of its host. A flow explanation: the endpoints it explains, wherever they are.
        self._is_local = is_local or (lambda node, _key: node == hostname)
        self._members = members
        self._resolver = resolver
        self._local: set[EndpointKey] = set()
        self._last_host: dict[str, HostEndpoint] = {}  # local host endpoints' last good values

    def knows(self, key: ItemKey) -> bool:
        return self._members.has_item(item_id(key))

    def on_workload(self, key: WorkloadEndpointID, res: WorkloadEndpoint | None) -> None:
        if res is None:
            self._members.remove_item(item_id(key))
            self._drop_local(key)
            return
        labels, parents = workload_labels(key.namespace, res)
        self._members.update_item(item_id(key), labels, parents, workload_item(res))
        if self._is_local(res.spec.node, key):
            self._local.add(key)
            self._resolver.update_endpoint(key, workload_info(res), labels, parents)
        else:
            self._drop_local(key)

    def on_host(self, name: str, res: HostEndpoint | None) -> None:
        key = HostEndpointKey(name)
        if res is None:
            self._members.remove_item(item_id(key))
            self._last_host.pop(name, None)
            self._drop_local(key)
            return
        labels, parents = host_labels(res)
        self._members.update_item(item_id(key), labels, parents, host_item(res))
        if self._is_local(res.spec.node, key):
            self._local.add(key)
            self._last_host[name] = res
            self._resolver.update_endpoint(key, host_info(res), labels, parents)
        else:
            self._last_host.pop(name, None)
            self._drop_local(key)

    def quarantine_host(self, name: str) -> bool:
        """A known host endpoint's value went bad: keep it (removing it would leave its interface
        unpoliced, i.e. open) but apply no policy and no profile to it, so only failsafes pass. Its IP set
        membership stays as last agreed. Returns whether it is local (else nothing changes)."""
        key = HostEndpointKey(name)
        last = self._last_host.get(name)
        if last is None or key not in self._local:
            return False
        labels, parents = host_labels(last)
        info = host_info(last)
        self._resolver.update_endpoint(
            key, LocalHost(info.iface, info.expected_ips, (), quarantined=True), labels, parents
        )
        return True

    def on_network_set(self, key: NetworkSetKey, res: NetworkSet | GlobalNetworkSet | None) -> None:
        if res is None:
            self._members.remove_item(item_id(key))
            return
        labels, parents = netset_labels(key.namespace, res)
        self._members.update_item(item_id(key), labels, parents, ItemData(tuple(res.spec.nets or ())))

    def on_profile_labels(self, name: str, labels_to_apply: Mapping[str, str] | None) -> None:
        """A profile's labelsToApply changed (None: profile deleted)."""
        # Only Calico says which namespace a thing is in; a profile cannot make a host endpoint namespaced.
        labels = None if labels_to_apply is None else _interned_all(labels_to_apply, drop=NS_LABEL)
        self._members.update_parent(name, labels)
        self._resolver.update_parent(name, labels)
        if name.startswith(KNS_PREFIX):
            namespace = name[len(KNS_PREFIX) :]
            ns_parent = namespace_parent(namespace)
            ns_labels = None if labels is None else _interned_all(namespace_labels(namespace, labels))
            self._members.update_parent(ns_parent, ns_labels)
            self._resolver.update_parent(ns_parent, ns_labels)

    def _drop_local(self, key: EndpointKey) -> None:
        if key in self._local:
            self._local.discard(key)
            self._resolver.remove_endpoint(key)


def _interned_all(labels: Mapping[str, str], drop: str = "") -> dict[str, str]:
    intern = sys.intern
    return {intern(k): intern(v) for k, v in labels.items() if k != drop}

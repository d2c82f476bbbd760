"""Event sequencer: the graph's pending changes in; one flush of dataplane events, in safe order, out.

Enters: the latest desired value of each policy, profile, local endpoint, IP pool, VTEP and route (`policy`,
`profile`, `endpoint`, `pool`, `vtep`, `route`; None = remove), IP set creates/changes and removes
(computed by `IPSetMembers`), the merged Felix configuration, and the in-sync signal.
Leaves (`flush`), in this order, each object at most once (its final state in this flush), nothing for
changes that end where the dataplane already is:

    ConfigUpdate                      settings first: they may change how everything else is programmed
    IPPoolUpdate                      pools before anything inside them
    RouteRemove                       routes go before the VTEP (or the VTEP family) they used
    VTEPUpdate                        tunnel endpoints exist before any route through them
    RouteUpdate
    VTEPRemove                        after every route through it was removed or re-pointed
    IPSetUpdate / IPSetDelta          sets exist before any rule names them
    PolicyUpdate, ProfileUpdate       policies/profiles exist before any endpoint lists them
    WorkloadEndpointUpdate, HostEndpointUpdate
    WorkloadEndpointRemove, HostEndpointRemove
    PolicyRemove, ProfileRemove       after the last endpoint that listed them changed or went
    IPSetRemove                       after the last rule naming them changed or went
    IPPoolRemove                      after the routes inside it
    InSync                            once, in the first flush after the datastore said in-sync

Within a group events are sorted by id, so equal inputs give equal output.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from calico.calculation.events import (
    ConfigUpdate,
    DataplaneEvent,
    HostEndpointRemove,
    HostEndpointUpdate,
    InSync,
    IPPoolRemove,
    IPPoolUpdate,
    IPSetDelta,
    IPSetRemove,
    IPSetUpdate,
    PolicyID,
    PolicyRemove,
    PolicyUpdate,
    ProfileRemove,
    ProfileUpdate,
    RouteRemove,
    RouteUpdate,
    VTEPRemove,
    VTEPUpdate,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calculation.types import EndpointEvent, EndpointKey, HostEndpointKey

__all__ = ["Sequencer"]

K = TypeVar("K", bound=Hashable)
U = TypeVar("U", bound=DataplaneEvent)


def _policy_key(pid: PolicyID) -> tuple[str, str, str]:
    return (pid.tier, pid.name, pid.namespace or "")


def _endpoint_key(key: EndpointKey) -> tuple[int, str, str]:
    if isinstance(key, HostEndpointKey):
        return (1, "", key.name)
    return (0, key.namespace, key.name)


class _Latest(Generic[K, U]):
    """One kind of keyed object: the latest desired value per key this flush, and what was last sent."""

    def __init__(self, remove: Callable[[K], DataplaneEvent], sort_key: Callable[[K], Any] | None = None) -> None:
        self._remove = remove
        self._sort_key = sort_key
        self.pending: dict[K, U | None] = {}
        self.sent: dict[K, U] = {}

    def drain(self) -> tuple[list[DataplaneEvent], list[DataplaneEvent]]:
        """(updates, removes) that take the dataplane from what it was sent to the latest values."""
        updates: list[DataplaneEvent] = []
        removes: list[DataplaneEvent] = []
        pending, self.pending = self.pending, {}
        for key in sorted(pending, key=self._sort_key):  # type: ignore[arg-type]
            value = pending[key]
            if value is None:
                if self.sent.pop(key, None) is not None:
                    removes.append(self._remove(key))
            elif self.sent.get(key) != value:
                self.sent[key] = value
                updates.append(value)
        return updates, removes


class Sequencer:
    """See the module docstring."""

    def __init__(self) -> None:
        self._policies: _Latest[PolicyID, PolicyUpdate] = _Latest(PolicyRemove, _policy_key)
        self._profiles: _Latest[str, ProfileUpdate] = _Latest(ProfileRemove)
        self._pools: _Latest[str, IPPoolUpdate] = _Latest(IPPoolRemove)
        self._vteps: _Latest[str, VTEPUpdate] = _Latest(VTEPRemove)
        self._routes: _Latest[str, RouteUpdate] = _Latest(RouteRemove)
        # What the dataplane has been told, to drop no-op changes.
        self._sent_endpoints: dict[EndpointKey, WorkloadEndpointUpdate | HostEndpointUpdate] = {}
        self._sent_config: ConfigUpdate | None = None
        self._endpoints: dict[EndpointKey, EndpointEvent] = {}
        self._config: ConfigUpdate | None = None
        self._in_sync = False

    def policy(self, pid: PolicyID, update: PolicyUpdate | None) -> None:
        self._policies.pending[pid] = update

    def profile(self, name: str, update: ProfileUpdate | None) -> None:
        self._profiles.pending[name] = update

    def endpoint(self, key: EndpointKey, event: EndpointEvent) -> None:
        self._endpoints[key] = event

    def pool(self, cidr: str, update: IPPoolUpdate | None) -> None:
        self._pools.pending[cidr] = update

    def vtep(self, node: str, update: VTEPUpdate | None) -> None:
        self._vteps.pending[node] = update

    def route(self, dst: str, update: RouteUpdate | None) -> None:
        self._routes.pending[dst] = update

    def config(self, update: ConfigUpdate) -> None:
        self._config = update

    def in_sync(self) -> None:
        self._in_sync = True

    def flush(
        self, ipset_changes: list[IPSetUpdate | IPSetDelta], ipset_removes: list[IPSetRemove]
    ) -> list[DataplaneEvent]:
        out: list[DataplaneEvent] = []
        if self._config is not None and self._config != self._sent_config:
            out.append(self._config)
            self._sent_config = self._config
        self._config = None

        pool_updates, pool_removes = self._pools.drain()
        vtep_updates, vtep_removes = self._vteps.drain()
        route_updates, route_removes = self._routes.drain()
        out += pool_updates + route_removes + vtep_updates + route_updates + vtep_removes

        out.extend(ipset_changes)
        policy_updates, policy_removes = self._policies.drain()
        profile_updates, profile_removes = self._profiles.drain()
        out += policy_updates + profile_updates

        endpoint_removes: list[DataplaneEvent] = []
        for key in sorted(self._endpoints, key=_endpoint_key):
            event = self._endpoints[key]
            if isinstance(event, WorkloadEndpointRemove | HostEndpointRemove):
                if self._sent_endpoints.pop(key, None) is not None:
                    endpoint_removes.append(event)
            elif self._sent_endpoints.get(key) != event:
                self._sent_endpoints[key] = event
                out.append(event)
        self._endpoints = {}

        out += endpoint_removes + policy_removes + profile_removes
        out.extend(ipset_removes)
        out += pool_removes
        if self._in_sync:
            out.append(InSync())
            self._in_sync = False
        return out

    # ---- queries (tests, debugging) ----------------------------------------------------------

    def sent_endpoint(self, key: WorkloadEndpointID | HostEndpointKey) -> object | None:
        return self._sent_endpoints.get(key)

    def sent_routes(self) -> dict[str, RouteUpdate]:
        return dict(self._routes.sent)

"""Event sequencer: the graph's pending changes in; one flush of dataplane events, in safe order, out.

Enters: the latest desired value of each policy, profile and local endpoint (`policy`, `profile`,
`endpoint`; None = remove), IP set creates/changes and removes (computed by `IPSetMembers`), the merged
Felix configuration, and the in-sync signal.
Leaves (`flush`), in this order, each object at most once (its final state in this flush), nothing for
changes that end where the dataplane already is:

    ConfigUpdate                      settings first: they may change how everything else is programmed
    IPSetUpdate / IPSetDelta          sets exist before any rule names them
    PolicyUpdate, ProfileUpdate       policies/profiles exist before any endpoint lists them
    WorkloadEndpointUpdate, HostEndpointUpdate
    WorkloadEndpointRemove, HostEndpointRemove
    PolicyRemove, ProfileRemove       after the last endpoint that listed them changed or went
    IPSetRemove                       after the last rule naming them changed or went
    InSync                            once, in the first flush after the datastore said in-sync

Within a group events are sorted by id, so equal inputs give equal output.
"""

from __future__ import annotations

from calico.calculation.events import (
    ConfigUpdate,
    DataplaneEvent,
    HostEndpointRemove,
    HostEndpointUpdate,
    InSync,
    IPSetDelta,
    IPSetRemove,
    IPSetUpdate,
    PolicyID,
    PolicyRemove,
    PolicyUpdate,
    ProfileRemove,
    ProfileUpdate,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calculation.types import EndpointEvent, EndpointKey, HostEndpointKey

__all__ = ["Sequencer"]


def _policy_key(pid: PolicyID) -> tuple[str, str, str]:
    return (pid.tier, pid.name, pid.namespace or "")


def _endpoint_key(key: EndpointKey) -> tuple[int, str, str]:
    if isinstance(key, HostEndpointKey):
        return (1, "", key.name)
    return (0, key.namespace, key.name)


class Sequencer:
    """See the module docstring."""

    def __init__(self) -> None:
        # What the dataplane has been told, to drop no-op changes.
        self._sent_policies: dict[PolicyID, PolicyUpdate] = {}
        self._sent_profiles: dict[str, ProfileUpdate] = {}
        self._sent_endpoints: dict[EndpointKey, WorkloadEndpointUpdate | HostEndpointUpdate] = {}
        self._sent_config: ConfigUpdate | None = None
        self._policies: dict[PolicyID, PolicyUpdate | None] = {}
        self._profiles: dict[str, ProfileUpdate | None] = {}
        self._endpoints: dict[EndpointKey, EndpointEvent] = {}
        self._config: ConfigUpdate | None = None
        self._in_sync = False

    def policy(self, pid: PolicyID, update: PolicyUpdate | None) -> None:
        self._policies[pid] = update

    def profile(self, name: str, update: ProfileUpdate | None) -> None:
        self._profiles[name] = update

    def endpoint(self, key: EndpointKey, event: EndpointEvent) -> None:
        self._endpoints[key] = event

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
        out.extend(ipset_changes)

        policy_removes: list[DataplaneEvent] = []
        for pid in sorted(self._policies, key=_policy_key):
            update = self._policies[pid]
            if update is None:
                if self._sent_policies.pop(pid, None) is not None:
                    policy_removes.append(PolicyRemove(pid))
            elif self._sent_policies.get(pid) != update:
                self._sent_policies[pid] = update
                out.append(update)
        self._policies = {}
        profile_removes: list[DataplaneEvent] = []
        for name in sorted(self._profiles):
            profile = self._profiles[name]
            if profile is None:
                if self._sent_profiles.pop(name, None) is not None:
                    profile_removes.append(ProfileRemove(name))
            elif self._sent_profiles.get(name) != profile:
                self._sent_profiles[name] = profile
                out.append(profile)
        self._profiles = {}

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

        out.extend(endpoint_removes)
        out.extend(policy_removes)
        out.extend(profile_removes)
        out.extend(ipset_removes)
        if self._in_sync:
            out.append(InSync())
            self._in_sync = False
        return out

    # ---- queries (tests, debugging) ----------------------------------------------------------

    def sent_endpoint(self, key: WorkloadEndpointID | HostEndpointKey) -> object | None:
        return self._sent_endpoints.get(key)

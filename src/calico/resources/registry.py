"""The table of resource kinds, and lookup of a kind by any name a CLI user may type.

In: a kind name, plural or short alias (any case). Out: the `Resource` subclass, or ResourceError.
"""

from __future__ import annotations

from calico.resources.bgp import BGPConfiguration, BGPPeer
from calico.resources.clusterinfo import ClusterInformation
from calico.resources.endpoint import HostEndpoint, WorkloadEndpoint
from calico.resources.errors import ResourceError
from calico.resources.felixconfig import FelixConfiguration
from calico.resources.ippool import IPPool
from calico.resources.ipreservation import IPReservation
from calico.resources.meta import Resource
from calico.resources.netset import GlobalNetworkSet, NetworkSet
from calico.resources.node import Node
from calico.resources.policy import (
    GlobalNetworkPolicy,
    NetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)
from calico.resources.profile import Profile

__all__ = ["KINDS", "kind_for"]

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (
        Node,
        WorkloadEndpoint,
        HostEndpoint,
        Profile,
        Tier,
        NetworkPolicy,
        GlobalNetworkPolicy,
        StagedNetworkPolicy,
        StagedGlobalNetworkPolicy,
        NetworkSet,
        GlobalNetworkSet,
        IPPool,
        IPReservation,
        BGPConfiguration,
        BGPPeer,
        FelixConfiguration,
        ClusterInformation,
    )
}


def _build_aliases() -> dict[str, type[Resource]]:
    aliases: dict[str, type[Resource]] = {}
    for cls in KINDS.values():
        for alias in (cls.KIND, cls.PLURAL, *cls.SHORT_NAMES):
            key = alias.lower()
            # An alias naming two kinds would make CLI lookups ambiguous.
            assert aliases.get(key, cls) is cls, f"alias {alias!r} is used by two kinds"
            aliases[key] = cls
    return aliases


_ALIASES = _build_aliases()
_GROUP_SUFFIX = ".projectcalico.org"


def kind_for(name: str) -> type[Resource]:
    """Resolve a kind, plural or alias, case-insensitively ("gnp", "IPPools", "networkpolicy")."""
    key = name.strip().lower() if isinstance(name, str) else ""
    key = key.removesuffix(_GROUP_SUFFIX)
    cls = _ALIASES.get(key)
    if cls is None:
        known = ", ".join(sorted(KINDS))
        raise ResourceError(f"unknown resource type {name!r}; known kinds: {known}")
    return cls

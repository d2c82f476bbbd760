"""Calico v3 resources (`apiVersion: projectcalico.org/v3`) as validated pydantic models.

In: manifest text (`load_documents`) or decoded mappings (`parse_resource`). Out: `Resource`
instances with Calico's defaults filled in and values canonicalised (CIDRs masked, selectors in
canonical form, protocols in Calico's spelling), or one `ResourceError` whose `problems` name the
kind, resource, field path and problem for everything wrong. `Resource.to_dict()` and
`dump_documents` give the user-facing (calicoctl) form back, which loads to an equal resource.

Model attributes use Calico's own camelCase field names (`spec.ingress[0].destination.ports`),
so YAML, Python and error paths all read the same. Models are mutable (callers default a missing
namespace to "default" themselves, as calicoctl does) but are not re-validated on assignment.
"""

from __future__ import annotations

from calico.resources.bgp import BGPConfiguration, BGPPeer
from calico.resources.clusterinfo import ClusterInformation
from calico.resources.endpoint import HostEndpoint, WorkloadEndpoint
from calico.resources.errors import Problem, ResourceError
from calico.resources.felixconfig import FelixConfiguration
from calico.resources.fields import duration_seconds
from calico.resources.ippool import IPPool, ippool_overlaps
from calico.resources.ipreservation import IPReservation
from calico.resources.loader import dump_documents, load_documents, parse_resource
from calico.resources.meta import API_VERSION, ObjectMeta, Resource
from calico.resources.netset import GlobalNetworkSet, NetworkSet
from calico.resources.node import Node
from calico.resources.policy import (
    DEFAULT_TIER,
    STAGED_KINDS,
    GlobalNetworkPolicy,
    NetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)
from calico.resources.profile import Profile
from calico.resources.registry import KINDS, kind_for
from calico.resources.rules import EntityRule, ICMPFields, Rule

__all__ = [
    "API_VERSION",
    "DEFAULT_TIER",
    "KINDS",
    "STAGED_KINDS",
    "BGPConfiguration",
    "BGPPeer",
    "ClusterInformation",
    "EntityRule",
    "FelixConfiguration",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "HostEndpoint",
    "ICMPFields",
    "IPPool",
    "IPReservation",
    "NetworkPolicy",
    "NetworkSet",
    "Node",
    "ObjectMeta",
    "Problem",
    "Profile",
    "Resource",
    "ResourceError",
    "Rule",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "Tier",
    "WorkloadEndpoint",
    "dump_documents",
    "duration_seconds",
    "ippool_overlaps",
    "kind_for",
    "load_documents",
    "parse_resource",
]

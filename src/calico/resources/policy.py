"""Policy kinds: `Tier`, `NetworkPolicy` (namespaced) and `GlobalNetworkPolicy`.

In: decoded policy documents. Out: validated resources with Calico's defaults filled in
(`tier: default`, `selector: all()`, `types` derived from the rules present, Tier `defaultAction:
Deny`), the tier/name pairing checked, and direction-specific rule checks applied.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import (
    DNS_SUBDOMAIN,
    LABEL_MSG,
    OptionalSelector,
    Order,
    Selector,
    check_label_name,
)
from calico.resources.meta import CalicoModel, Resource, empty_spec
from calico.resources.rules import Rule

__all__ = [
    "DEFAULT_TIER",
    "STAGED_KINDS",
    "GlobalNetworkPolicy",
    "GlobalNetworkPolicySpec",
    "NetworkPolicy",
    "NetworkPolicySpec",
    "PolicyType",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "Tier",
    "TierSpec",
]

DEFAULT_TIER = "default"
PolicyType = Literal["Ingress", "Egress"]

_LBL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
# Policy names are DNS labels, optionally "<tier>." prefixed (one dot); Kubernetes-derived
# policies ("knp.default.<name>") may have a longer dotted tail.
_NP_NAME = re.compile(rf"{_LBL}(?:\.{_LBL})?\Z")
_GNP_NAME = re.compile(rf"(?:{_LBL}\.)?{_LBL}\Z")
_K8S_PREFIXES = ("knp.default.", "ossg.default.")


def _tier_name(value: Any) -> str:
    return check_label_name(value, "tier name")


TierName = Annotated[str, PlainValidator(_tier_name)]


def _policy_name(value: Any, pattern: re.Pattern[str], k8s_prefixes: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"name must be a string (got {show(value)})")
    if not value:
        raise ValueError("name must not be empty")
    if len(value) > 253:
        raise ValueError(f"name {show(value)} is {len(value)} characters long; the limit is 253")
    if k8s_prefixes and value.startswith(_K8S_PREFIXES):
        if DNS_SUBDOMAIN.match(value):
            return value
    elif pattern.match(value):
        return value
    raise ValueError(f'invalid policy name {show(value)}: {LABEL_MSG}, optionally prefixed by "<tier>."')


def _check_tier_prefix(name: str, tier: str) -> None:
    """Calico's tiered naming: a policy in tier T is named "T.<name>"; in the default tier the
    prefix is optional but, if present, must be "default"."""
    if name.startswith(_K8S_PREFIXES):
        if tier != DEFAULT_TIER:
            fail(f"policy {show(name)} is derived from Kubernetes and must be in the default tier", "spec", "tier")
        return
    prefix, dot, _ = name.partition(".")
    if tier != DEFAULT_TIER and (not dot or prefix != tier):
        fail(f'policy in tier {show(tier)} must be named "{tier}.<name>" (got {show(name)})', "metadata", "name")
    if tier == DEFAULT_TIER and dot and prefix != DEFAULT_TIER:
        fail(
            f'policy name {show(name)} implies tier {show(prefix)} but spec.tier is "default"; set spec.tier',
            "metadata",
            "name",
        )


def _default_types(spec: _PolicySpec) -> list[PolicyType]:
    """Calico's defaulting when `types` is omitted: from the rules present, Ingress if none."""
    types: list[PolicyType] = []
    if spec.ingress:
        types.append("Ingress")
    if spec.egress:
        types.append("Egress")
    return types or ["Ingress"]


class _PolicySpec(CalicoModel):
    tier: TierName = DEFAULT_TIER
    order: Order | None = None
    selector: Selector = "all()"
    types: list[PolicyType] | None = None
    ingress: list[Rule] | None = None
    egress: list[Rule] | None = None
    serviceAccountSelector: OptionalSelector = None

    def _check_common(self) -> None:
        if self.types:
            for i, t in enumerate(self.types):
                if t in self.types[:i]:
                    fail(f"{show(t)} type specified more than once", "types", i)
        else:
            self.types = _default_types(self)
        for i, rule in enumerate(self.ingress or ()):
            if rule.destination.services is not None:
                fail(
                    "services are not allowed in an ingress rule's destination", "ingress", i, "destination", "services"
                )
        for i, rule in enumerate(self.egress or ()):
            if rule.source.services is not None:
                fail("services are not allowed in an egress rule's source", "egress", i, "source", "services")
            if rule.http is not None:
                fail("http matches are not allowed in egress rules", "egress", i, "http")


class NetworkPolicySpec(_PolicySpec):
    @model_validator(mode="after")
    def _check(self) -> NetworkPolicySpec:
        self._check_common()
        return self


class GlobalNetworkPolicySpec(_PolicySpec):
    namespaceSelector: OptionalSelector = None
    doNotTrack: bool = Field(default=False, exclude_if=lambda v: not v)
    preDNAT: bool = Field(default=False, exclude_if=lambda v: not v)
    applyOnForward: bool = Field(default=False, exclude_if=lambda v: not v)

    @model_validator(mode="after")
    def _check(self) -> GlobalNetworkPolicySpec:
        if self.doNotTrack and self.preDNAT:
            fail("preDNAT and doNotTrack cannot both be true", "preDNAT")
        if self.preDNAT and self.egress:
            fail("a preDNAT policy cannot have egress rules", "egress")
        if self.preDNAT and self.types and "Egress" in self.types:
            fail("a preDNAT policy cannot have type Egress", "types")
        if (self.doNotTrack or self.preDNAT) and not self.applyOnForward:
            fail("applyOnForward must be true when preDNAT or doNotTrack is true", "applyOnForward")
        for i, rule in enumerate(self.ingress or ()):
            # Cluster-wide policy has no namespace to resolve a bare service name in.
            if rule.source.services is not None and not rule.source.services.namespace:
                fail("a service match needs a namespace", "ingress", i, "source", "services", "namespace")
        for i, rule in enumerate(self.egress or ()):
            if rule.destination.services is not None and not rule.destination.services.namespace:
                fail("a service match needs a namespace", "egress", i, "destination", "services", "namespace")
        self._check_common()
        return self


class NetworkPolicy(Resource):
    KIND: ClassVar[str] = "NetworkPolicy"
    PLURAL: ClassVar[str] = "networkpolicies"
    NAMESPACED: ClassVar[bool] = True
    SHORT_NAMES: ClassVar[tuple[str, ...]] = (
        "networkpolicy",
        "policy",
        "policies",
        "pol",
        "pols",
        "np",
        "netpol",
        "netpols",
    )

    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    spec: NetworkPolicySpec = Field(default_factory=empty_spec(NetworkPolicySpec))

    @classmethod
    def check_name(cls, value: Any) -> str:
        return _policy_name(value, _NP_NAME, k8s_prefixes=True)

    @model_validator(mode="after")
    def _tiered_name(self) -> NetworkPolicy:
        _check_tier_prefix(self.metadata.name, self.spec.tier)
        return self


class GlobalNetworkPolicy(Resource):
    KIND: ClassVar[str] = "GlobalNetworkPolicy"
    PLURAL: ClassVar[str] = "globalnetworkpolicies"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = (
        "globalnetworkpolicy",
        "gnp",
        "gnps",
        "globalpolicy",
        "globalpolicies",
        "gpol",
        "gpols",
    )

    kind: Literal["GlobalNetworkPolicy"] = "GlobalNetworkPolicy"
    spec: GlobalNetworkPolicySpec = Field(default_factory=empty_spec(GlobalNetworkPolicySpec))

    @classmethod
    def check_name(cls, value: Any) -> str:
        return _policy_name(value, _GNP_NAME, k8s_prefixes=False)

    @model_validator(mode="after")
    def _tiered_name(self) -> GlobalNetworkPolicy:
        _check_tier_prefix(self.metadata.name, self.spec.tier)
        return self


class TierSpec(CalicoModel):
    order: Order | None = None
    defaultAction: Literal["Deny", "Pass"] = "Deny"


class Tier(Resource):
    KIND: ClassVar[str] = "Tier"
    PLURAL: ClassVar[str] = "tiers"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("tier",)

    kind: Literal["Tier"] = "Tier"
    spec: TierSpec = Field(default_factory=empty_spec(TierSpec))

    @classmethod
    def check_name(cls, value: Any) -> str:
        # Tier names become policy-name prefixes, so they are single DNS labels (no dots).
        return _tier_name(value)


# --- staged policies: evaluated (explain, flow logs), never enforced ---------------------------------------------

StagedAction = Literal["Set", "Delete"]


class StagedNetworkPolicySpec(NetworkPolicySpec):
    # Set: the policy of the same name would be created or replaced by this one; Delete: it would be removed.
    stagedAction: StagedAction = "Set"


class StagedGlobalNetworkPolicySpec(GlobalNetworkPolicySpec):
    stagedAction: StagedAction = "Set"


class StagedNetworkPolicy(Resource):
    KIND: ClassVar[str] = "StagedNetworkPolicy"
    PLURAL: ClassVar[str] = "stagednetworkpolicies"
    NAMESPACED: ClassVar[bool] = True
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("stagednetworkpolicy", "snp", "snps")
    ENFORCED_KIND: ClassVar[str] = NetworkPolicy.KIND

    kind: Literal["StagedNetworkPolicy"] = "StagedNetworkPolicy"
    spec: StagedNetworkPolicySpec = Field(default_factory=empty_spec(StagedNetworkPolicySpec))

    @classmethod
    def check_name(cls, value: Any) -> str:
        return _policy_name(value, _NP_NAME, k8s_prefixes=True)

    @model_validator(mode="after")
    def _tiered_name(self) -> StagedNetworkPolicy:
        _check_tier_prefix(self.metadata.name, self.spec.tier)
        return self


class StagedGlobalNetworkPolicy(Resource):
    KIND: ClassVar[str] = "StagedGlobalNetworkPolicy"
    PLURAL: ClassVar[str] = "stagedglobalnetworkpolicies"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("stagedglobalnetworkpolicy", "sgnp", "sgnps")
    ENFORCED_KIND: ClassVar[str] = GlobalNetworkPolicy.KIND

    kind: Literal["StagedGlobalNetworkPolicy"] = "StagedGlobalNetworkPolicy"
    spec: StagedGlobalNetworkPolicySpec = Field(default_factory=empty_spec(StagedGlobalNetworkPolicySpec))

    @classmethod
    def check_name(cls, value: Any) -> str:
        return _policy_name(value, _GNP_NAME, k8s_prefixes=False)

    @model_validator(mode="after")
    def _tiered_name(self) -> StagedGlobalNetworkPolicy:
        _check_tier_prefix(self.metadata.name, self.spec.tier)
        return self


STAGED_KINDS: tuple[type[StagedNetworkPolicy] | type[StagedGlobalNetworkPolicy], ...] = (
    StagedNetworkPolicy, StagedGlobalNetworkPolicy)

"""Policy rules: `Rule`, its `EntityRule` source/destination, ICMP, HTTP and service matches.

In: one decoded rule mapping. Out: a validated `Rule` with canonical protocols, ports, CIDRs and
selectors, or validation errors pointing at the offending sub-field. Direction-specific checks
(what may appear in ingress vs egress rules) live with the policy that holds the rules.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import (
    CIDR,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Annotations,
    Name,
    OptionalNamespaceSelector,
    OptionalSelector,
    Protocol,
    RulePort,
    cidr_version,
    int_range,
)
from calico.resources.meta import CalicoModel

__all__ = [
    "Action",
    "EntityRule",
    "HTTPMatch",
    "HTTPPath",
    "ICMPFields",
    "Rule",
    "RuleMetadata",
    "ServiceAccountMatch",
    "ServiceMatch",
]

Action = Literal["Allow", "Deny", "Log", "Pass"]
MAX_NETS = 256
MAX_PORTS = 50

Nets = Annotated[list[CIDR], Field(max_length=MAX_NETS)]
Ports = Annotated[list[RulePort], Field(max_length=MAX_PORTS)]


class ICMPFields(CalicoModel):
    type: Annotated[int, int_range(0, 254, "ICMP type")] | None = None
    code: Annotated[int, int_range(0, 255, "ICMP code")] | None = None

    @model_validator(mode="after")
    def _code_needs_type(self) -> ICMPFields:
        # The kernel can only match a code together with a type.
        if self.code is not None and self.type is None:
            fail("ICMP code specified without an ICMP type", "code")
        return self


class ServiceAccountMatch(CalicoModel):
    names: list[Name] | None = None
    selector: OptionalSelector = None


class ServiceMatch(CalicoModel):
    """A Kubernetes Service, by name (and namespace; defaults to the policy's)."""

    name: Name
    namespace: Annotated[str, Field(min_length=1)] | None = None


class HTTPPath(CalicoModel):
    exact: str | None = None
    prefix: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> HTTPPath:
        if self.exact is not None and self.prefix is not None:
            fail("only one of exact or prefix may be set")
        path = self.exact if self.exact is not None else self.prefix
        if not path:
            fail("one of exact or prefix must be set")
        if not path.startswith("/") or any(c in path for c in "? #"):
            fail(f"invalid path {show(path)}: must start with '/' and not contain '?', '#' or spaces")
        return self


class HTTPMatch(CalicoModel):
    """Accepted and validated; only meaningful with an application-layer policy engine."""

    methods: list[str] | None = None
    paths: list[HTTPPath] | None = None

    @field_validator("methods")
    @classmethod
    def _no_duplicates(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"duplicate HTTP methods in {show(value)}")
        return value


class EntityRule(CalicoModel):
    """Match criteria for one end (source or destination) of a connection."""

    nets: Nets | None = None
    notNets: Nets | None = None
    selector: OptionalSelector = None
    notSelector: OptionalSelector = None
    namespaceSelector: OptionalNamespaceSelector = None
    ports: Ports | None = None
    notPorts: Ports | None = None
    serviceAccounts: ServiceAccountMatch | None = None
    services: ServiceMatch | None = None

    @model_validator(mode="after")
    def _services_alone(self) -> EntityRule:
        # A service match takes its addresses and ports from the service's endpoints.
        if self.services is not None:
            for field in ("selector", "notSelector", "namespaceSelector", "serviceAccounts", "nets", "notNets"):
                if getattr(self, field):
                    fail(f"cannot specify {field} together with services", field)
        return self


def _port_fields(rule: Rule) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for side in ("source", "destination"):
        ent: EntityRule = getattr(rule, side)
        out += [(side, f) for f in ("ports", "notPorts") if getattr(ent, f)]
    return out


class RuleMetadata(CalicoModel):
    annotations: Annotations | None = None


class Rule(CalicoModel):
    action: Action
    ipVersion: Literal[4, 6] | None = None
    protocol: Protocol | None = None
    notProtocol: Protocol | None = None
    icmp: ICMPFields | None = None
    notICMP: ICMPFields | None = None
    source: EntityRule = Field(default_factory=EntityRule)
    destination: EntityRule = Field(default_factory=EntityRule)
    http: HTTPMatch | None = None
    metadata: RuleMetadata | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        for side, field in _port_fields(self):
            if self.protocol not in PORT_PROTOCOLS:
                fail("rules that specify ports must set protocol to TCP, UDP or SCTP", side, field)
        for field in ("icmp", "notICMP"):
            if getattr(self, field) is not None and self.protocol not in ICMP_PROTOCOLS:
                fail(f"rules that specify {field} must set protocol to ICMP or ICMPv6", field)
        for field in ("protocol", "notProtocol"):
            proto = getattr(self, field)
            implied = ICMP_PROTOCOLS.get(proto) if proto is not None else None
            if implied and self.ipVersion is not None and self.ipVersion != implied:
                fail(f"ipVersion must be {implied} with {field} {proto}", "ipVersion")
        self._check_nets()
        if self.http is not None:
            if self.protocol is not None and self.protocol not in ("TCP", 6):
                fail("rules that specify http must have protocol TCP or none", "protocol")
            if self.action != "Allow":
                fail("http matches are only valid in Allow rules", "http")
        if self.destination.services is not None:
            for field in ("ports", "notPorts"):
                if getattr(self.destination, field):
                    fail(f"cannot specify {field} with a service match", "destination", field)
        return self

    def _check_nets(self) -> None:
        seen: set[int] = set()
        for side in ("source", "destination"):
            ent: EntityRule = getattr(self, side)
            for field in ("nets", "notNets"):
                nets: list[str] | None = getattr(ent, field)
                if not nets:
                    continue
                versions = {cidr_version(n) for n in nets}
                if self.ipVersion is not None and versions != {self.ipVersion}:
                    fail(f"CIDR IP version does not match the rule's ipVersion {self.ipVersion}", side, field)
                seen |= versions
                if len(seen) > 1:
                    fail("rule contains both IPv4 and IPv6 CIDRs", side, field)

    def ip_version(self) -> int | None:
        """The IP version this rule is limited to: explicit, or implied by ICMP or its CIDRs."""
        if self.ipVersion is not None:
            return self.ipVersion
        if self.protocol is not None and self.protocol in ICMP_PROTOCOLS:
            return ICMP_PROTOCOLS[self.protocol]
        for ent in (self.source, self.destination):
            for nets in (ent.nets, ent.notNets):
                if nets:
                    return cidr_version(nets[0])
        return None

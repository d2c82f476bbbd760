"""Network set kinds: `NetworkSet` (namespaced) and `GlobalNetworkSet`.

In: decoded network set documents. Out: validated sets whose `nets` are canonical CIDRs; their
labels make them selectable by policy rules like endpoints.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainValidator, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import CIDR
from calico.resources.meta import CalicoModel, Resource, empty_spec

__all__ = ["GlobalNetworkSet", "GlobalNetworkSetSpec", "NetworkSet", "NetworkSetSpec"]

# A domain name, optionally with one leading "*." wildcard label.
_DOMAIN = re.compile(
    r"(?:\*\.)?(?:[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?\Z"
)


def _check_domain(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 253 or not _DOMAIN.match(value):
        raise ValueError(f"invalid domain name {show(value)}")
    return value


Domain = Annotated[str, PlainValidator(_check_domain)]
_RESERVED_LABEL = "projectcalico.org/namespace"


class NetworkSetSpec(CalicoModel):
    nets: list[CIDR] | None = None
    allowedEgressDomains: list[Domain] | None = None


class GlobalNetworkSetSpec(NetworkSetSpec):
    pass


class _NetworkSetBase(Resource):
    @model_validator(mode="after")
    def _reserved(self) -> _NetworkSetBase:
        # Calico sets this label itself when mapping namespaces; users may not.
        if self.metadata.labels and _RESERVED_LABEL in self.metadata.labels:
            fail(f"{_RESERVED_LABEL} is a reserved label", "metadata", "labels", _RESERVED_LABEL)
        return self


class NetworkSet(_NetworkSetBase):
    KIND: ClassVar[str] = "NetworkSet"
    PLURAL: ClassVar[str] = "networksets"
    NAMESPACED: ClassVar[bool] = True
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("networkset", "netset", "netsets")

    kind: Literal["NetworkSet"] = "NetworkSet"
    spec: NetworkSetSpec = Field(default_factory=empty_spec(NetworkSetSpec))


class GlobalNetworkSet(_NetworkSetBase):
    KIND: ClassVar[str] = "GlobalNetworkSet"
    PLURAL: ClassVar[str] = "globalnetworksets"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("globalnetworkset", "gns", "gnss", "globalnetset", "globalnetsets")

    kind: Literal["GlobalNetworkSet"] = "GlobalNetworkSet"
    spec: GlobalNetworkSetSpec = Field(default_factory=empty_spec(GlobalNetworkSetSpec))

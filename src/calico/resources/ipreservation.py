"""The `IPReservation` kind: addresses Calico IPAM must never hand out automatically.

In: a decoded IPReservation document. Out: a validated reservation whose `reservedCIDRs` are canonical CIDRs
(a bare address becomes a /32 or /128). IPAM reads every reservation on each automatic assignment; an address
asked for by name (`assign_ip`) is not checked against them, as in Calico.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from calico.resources.fields import CIDR
from calico.resources.meta import CalicoModel, Resource, empty_spec

__all__ = ["IPReservation", "IPReservationSpec"]


class IPReservationSpec(CalicoModel):
    reservedCIDRs: list[CIDR] | None = None


class IPReservation(Resource):
    KIND: ClassVar[str] = "IPReservation"
    PLURAL: ClassVar[str] = "ipreservations"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ipreservation", "reservation", "reservations")

    kind: Literal["IPReservation"] = "IPReservation"
    spec: IPReservationSpec = Field(default_factory=empty_spec(IPReservationSpec))

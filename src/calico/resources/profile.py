"""The `Profile` kind: rules and labels applied to endpoints that list the profile.

In: a decoded Profile document. Out: a validated `Profile` (rules as in policies, plus
`labelsToApply`, the labels every endpoint using the profile inherits).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from calico.resources.fields import Labels
from calico.resources.meta import CalicoModel, Resource, empty_spec
from calico.resources.rules import Rule

__all__ = ["Profile", "ProfileSpec"]


class ProfileSpec(CalicoModel):
    ingress: list[Rule] | None = None
    egress: list[Rule] | None = None
    labelsToApply: Labels | None = None


class Profile(Resource):
    KIND: ClassVar[str] = "Profile"
    PLURAL: ClassVar[str] = "profiles"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("profile", "pro", "pros")

    kind: Literal["Profile"] = "Profile"
    spec: ProfileSpec = Field(default_factory=empty_spec(ProfileSpec))

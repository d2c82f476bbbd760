"""Type and object metadata shared by every Calico v3 resource, and the `Resource` base class.

In: the `apiVersion`/`kind`/`metadata` part of a decoded document. Out: validated `ObjectMeta`
and `Resource` instances whose `to_dict()` is the user-facing (calicoctl) form.
Model attributes carry Calico's own camelCase field names, so YAML keys, Python attributes and
`to_dict()` keys are identical.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from calico.resources.fields import Annotations, Labels, check_label_name, check_subdomain

API_VERSION = "projectcalico.org/v3"

__all__ = ["API_VERSION", "CalicoModel", "ObjectMeta", "OwnerReference", "Resource", "empty_spec"]


class CalicoModel(BaseModel):
    """Base of every model: unknown fields are errors, and types are strict as Go's JSON decoder
    is (no "true" for a bool, no 1 for a string)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


M = TypeVar("M", bound="CalicoModel")


def empty_spec(model: type[M]) -> Callable[[], M]:
    """Default factory for an omitted spec: validated, so spec-level defaulting still happens."""
    return lambda: model.model_validate({})


class OwnerReference(CalicoModel):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(CalicoModel):
    """Kubernetes-style object metadata. The name rule and whether a namespace is allowed depend on
    the kind, which `Resource.parse` passes in the validation context."""

    name: str
    namespace: str | None = None
    labels: Labels | None = None
    annotations: Annotations | None = None
    resourceVersion: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    generation: int | None = None
    finalizers: list[str] | None = None
    ownerReferences: list[OwnerReference] | None = None

    @field_validator("creationTimestamp", "deletionTimestamp", mode="before")
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        # A plain YAML 1.1 loader turns timestamps into datetimes; keep Kubernetes' RFC 3339 text.
        if isinstance(value, datetime.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(datetime.UTC).replace(tzinfo=None)
            return value.isoformat(timespec="seconds") + "Z"
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str, info: ValidationInfo) -> str:
        ctx = info.context if isinstance(info.context, dict) else {}
        rule: Callable[[Any], str] = ctx.get("name_rule", check_subdomain)
        return rule(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value == "":
            return None  # calicoctl treats an empty namespace as unset
        ctx = info.context if isinstance(info.context, dict) else {}
        if ctx.get("namespaced") is False:
            raise ValueError(f"{ctx.get('kind', 'this kind')} is not namespaced; remove metadata.namespace")
        return check_label_name(value, "namespace")


class Resource(CalicoModel):
    """A Calico v3 resource. Subclasses set the class attributes and add `kind` and `spec`."""

    KIND: ClassVar[str] = ""
    PLURAL: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = False
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ()

    apiVersion: Literal["projectcalico.org/v3"] = API_VERSION
    kind: str
    metadata: ObjectMeta

    @classmethod
    def check_name(cls, value: Any) -> str:
        """The kind's rule for metadata.name; most kinds use a DNS-1123 subdomain."""
        return check_subdomain(value)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Resource:
        """Validate a decoded document as this kind (raises pydantic's ValidationError)."""
        ctx = {"name_rule": cls.check_name, "namespaced": cls.NAMESPACED, "kind": cls.KIND}
        return cls.model_validate(data, context=ctx)

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    def to_dict(self) -> dict[str, Any]:
        """The user-facing form: Calico's field names, unset optionals left out, defaults filled."""
        return self.model_dump(mode="json", exclude_none=True)

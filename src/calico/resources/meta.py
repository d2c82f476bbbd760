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

    # cache_strings="keys": JSON validation (`parse_json_fast`) would otherwise keep up to 16k value strings
    # alive in pydantic-core's cache (~1.7 MB in calico-felix at 10k endpoints).
    # defer_build: a model's validator is built on first use, so importing every kind costs an agent only the
    # kinds it reads (calico-felix never validates BGP, Node or IPPool resources: ~30 ms off its start).
    model_config = ConfigDict(
        extra="forbid", strict=True, validate_default=False, cache_strings="keys", defer_build=True
    )


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
    def _context(cls) -> dict[str, Any]:
        return {"name_rule": cls.check_name, "namespaced": cls.NAMESPACED, "kind": cls.KIND}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Resource:
        """Validate a decoded document as this kind (raises pydantic's ValidationError)."""
        return cls.model_validate(data, context=cls._context())

    @classmethod
    def parse_json_fast(cls, value: bytes | str) -> Resource | None:
        """JSON text straight to this kind without an intermediate dict (~25% cheaper), or None when that does
        not give a resource: the caller then takes `loader.parse_resource`, which says what is wrong.

        Only for kinds whose fields are all strings, ints, bools, lists, dicts, nested models or plain
        validators, where pydantic's strict JSON mode accepts exactly what its strict Python mode accepts
        from `json.loads`. `apiVersion` and `kind` have defaults in the model but are required in a document."""
        try:
            res = cls.model_validate_json(value, context=cls._context())
        except Exception:  # any failure: the full path reports (or raises) it
            return None
        fields = res.model_fields_set
        if "apiVersion" not in fields or "kind" not in fields:
            return None
        return res

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    def to_dict(self) -> dict[str, Any]:
        """The user-facing form: Calico's field names, unset optionals left out, defaults filled."""
        return self.model_dump(mode="json", exclude_none=True)

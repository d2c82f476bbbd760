"""Resource validation errors: one `ResourceError` carrying every `Problem` found.

In: pydantic `ValidationError`s (translated here into Calico-style field paths) or problems built
directly by the loader. Out: `ResourceError.problems`, and `str()` lines such as
``policy.yaml document 2: NetworkPolicy(ns1/allow-web): spec.ingress[0].action: required field missing``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["Problem", "ResourceError", "fail", "format_path", "problems_from_validation_error", "show"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one resource (or with a document that never became one).

    `kind`/`name` are "" and `namespace` None when unknown; `field_path` is "" for document-level
    problems; `source` says where the resource came from ("file.yaml document 3"), "" if nowhere.
    """

    kind: str
    name: str
    namespace: str | None
    field_path: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        parts: list[str] = []
        if self.source:
            parts.append(self.source)
        if self.kind:
            if self.name:
                who = f"{self.namespace}/{self.name}" if self.namespace else self.name
                parts.append(f"{self.kind}({who})")
            else:
                parts.append(self.kind)
        if self.field_path:
            parts.append(self.field_path)
        parts.append(self.message)
        return ": ".join(parts)


class ResourceError(ValueError):
    """One or more resources are invalid; `problems` lists every problem found."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("", "", None, "", problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def fail(message: str, *path: str | int) -> NoReturn:
    """Raise a validation error from inside a model validator, `path` relative to that model.

    Pydantic reports model-level errors at the model's own location; the extra path rides in the
    error context so the translator can point at the offending sub-field.
    """
    raise PydanticCustomError("calico", "{message}", {"message": message, "path": tuple(path)})


def show(value: Any) -> str:
    """Render a user value for an error message: strings double-quoted, long values cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def format_path(loc: Iterable[Any]) -> str:
    """`("spec", "ingress", 0, "action")` -> `spec.ingress[0].action`; odd map keys are quoted."""
    out = ""
    for seg in loc:
        if isinstance(seg, bool) or not isinstance(seg, int | str):
            seg = str(seg)
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif seg == "[key]":
            continue  # pydantic's marker for "the key itself"; the message says so
        elif _IDENT.match(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{json.dumps(seg, ensure_ascii=False)}]"
    return out


# Pydantic message prefixes that read badly once a field path is in front of them.
_PREFIXES = ("Value error, ", "Assertion failed, ")
_TYPE_WORDS = {
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be true or false",
    "float_type": "must be a number",
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _message(err: Any) -> str:
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        return "unknown field"
    if etype == "missing":
        return "required field missing"
    if etype == "invalid_key":
        return "field names must be strings"
    if etype in _TYPE_WORDS:
        value = err.get("input")
        got = "null" if value is None else f"{_type_name(value)} {show(value)}"
        return f"{_TYPE_WORDS[etype]} (got {got})"
    msg = str(err.get("msg", "invalid value"))
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be ") :] + f" (got {show(err.get('input'))})"
    return msg


def problems_from_validation_error(
    exc: ValidationError, kind: str, name: str, namespace: str | None, source: str = ""
) -> list[Problem]:
    """Translate every pydantic error into a Problem with a Calico-style field path."""
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc: tuple[Any, ...] = tuple(err.get("loc", ()))
        ctx = err.get("ctx") or {}
        extra = ctx.get("path") if err.get("type") == "calico" else None
        if isinstance(extra, tuple):
            loc += extra
        problems.append(Problem(kind, name, namespace, format_path(loc), _message(err), source))
    return problems

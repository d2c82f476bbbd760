"""Text <-> resources: YAML/JSON documents in, validated `Resource`s out, and back again.

In: manifest text (YAML, multi-document YAML, or JSON; `kind: List`/`XxxList` wrappers allowed)
or one decoded mapping. Out: validated resources, or one `ResourceError` listing every problem in
every document, so that nothing is applied from a file with any error in it. `dump_documents`
renders resources as calicoctl prints them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from calico.resources.errors import Problem, ResourceError, problems_from_validation_error, show
from calico.resources.meta import API_VERSION, Resource
from calico.resources.registry import KINDS

__all__ = ["dump_documents", "load_documents", "parse_resource"]


def _where(source: str, index: int) -> str:
    return f"document {index}" if source in ("", "-") else f"{source} document {index}"


def _identity(data: Mapping[Any, Any]) -> tuple[str, str, str | None]:
    """Best-effort kind, name and namespace of a raw document, for naming it in errors."""
    kind = data.get("kind")
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    ns = meta.get("namespace") if isinstance(meta, Mapping) else None
    return (
        kind if isinstance(kind, str) else "",
        name if isinstance(name, str) else "",
        ns if isinstance(ns, str) and ns else None,
    )


def _kind_problem(kind: Any) -> str | None:
    if kind is None:
        return "required field missing"
    if not isinstance(kind, str):
        return f"must be a string (got {show(kind)})"
    if kind in KINDS:
        return None
    hint = next((k for k in KINDS if k.lower() == kind.lower()), None)
    if hint:
        return f"unknown kind {show(kind)} (did you mean {hint}?)"
    return f"unknown kind {show(kind)}; known kinds: {', '.join(sorted(KINDS))}"


def parse_resource(data: Mapping[str, Any], source: str = "") -> Resource:
    """Validate one decoded document and build its resource; `source` locates it in messages."""
    if not isinstance(data, Mapping):
        raise ResourceError([Problem("", "", None, "", f"a resource must be a mapping (got {show(data)})", source)])
    kind, name, ns = _identity(data)
    problems: list[Problem] = []
    doc = dict(data)
    api = doc.get("apiVersion")
    if api is None:
        problems.append(Problem(kind, name, ns, "apiVersion", "required field missing", source))
    elif api != API_VERSION:
        problems.append(Problem(kind, name, ns, "apiVersion", f"must be {API_VERSION} (got {show(api)})", source))
    doc["apiVersion"] = API_VERSION  # reported above; keep pydantic from repeating it
    why = _kind_problem(doc.get("kind"))
    if why:
        problems.append(Problem("", name, ns, "kind", why, source))
        raise ResourceError(problems)
    cls = KINDS[kind]
    try:
        resource = cls.parse(doc)
    except ValidationError as exc:
        problems += problems_from_validation_error(exc, kind, name, ns, source)
    except RecursionError:
        problems.append(Problem(kind, name, ns, "", "document is nested too deeply", source))
    if problems:
        raise ResourceError(problems)
    return resource


def _decode_json(text: str) -> list[Any]:
    """One JSON value, or several back to back (a JSON stream, as kubectl accepts)."""
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return docs
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)


def _decode(text: str, source: str) -> tuple[list[Any], list[Problem]]:
    """Split text into decoded documents; a syntax error ends decoding with one problem."""
    where = source if source not in ("", "-") else ""
    if text.lstrip().startswith(("{", "[")):
        try:
            return _decode_json(text), []
        except json.JSONDecodeError as exc:
            json_error = Problem(
                "", "", None, "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}", where
            )
        except (ValueError, RecursionError) as exc:
            json_error = Problem("", "", None, "", f"invalid JSON: {exc}", where)
        # Flow-style YAML also starts with '{'; only if that fails too is it a JSON error.
        docs, problems = _decode_yaml(text, where)
        return (docs, problems) if not problems else ([], [json_error])
    return _decode_yaml(text, where)


def _decode_yaml(text: str, where: str) -> tuple[list[Any], list[Problem]]:
    import yaml  # late: PyYAML costs every importer of resources (calico-felix) ~8 ms and only calicoctl reads YAML

    from calico.resources.yamlio import Loader

    docs: list[Any] = []
    try:
        for doc in yaml.load_all(text, Loader=Loader):  # a SafeLoader subclass
            docs.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        return docs, [Problem("", "", None, "", f"invalid YAML{at}: {what}", where)]
    except RecursionError:
        return docs, [Problem("", "", None, "", "invalid YAML: nested too deeply", where)]
    except Exception as exc:  # PyYAML can raise plain errors (e.g. huge numbers); all mean bad input
        return docs, [Problem("", "", None, "", f"invalid YAML: {exc}", where)]
    return docs, []


_LIST_KEYS = {"apiVersion", "kind", "items", "metadata"}


def _expand(doc: Any, where: str) -> tuple[list[tuple[Any, str]], list[Problem]]:
    """A document -> (item, location) pairs: itself, or the items of a List / XxxList."""
    if not isinstance(doc, Mapping):
        return [], [Problem("", "", None, "", f"document is not a mapping (got {show(doc)})", where)]
    kind = doc.get("kind")
    if not isinstance(kind, str) or not (kind == "List" or (kind.endswith("List") and kind[:-4] in KINDS)):
        return [(doc, where)], []
    problems = [Problem(kind, "", None, str(k), "unknown field", where) for k in doc if k not in _LIST_KEYS]
    items = doc.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        return [], [*problems, Problem(kind, "", None, "items", f"must be a list (got {show(items)})", where)]
    item_kind = kind[:-4] if kind != "List" else None
    out: list[tuple[Any, str]] = []
    for i, item in enumerate(items):
        loc = f"{where} items[{i}]"
        if item_kind and isinstance(item, Mapping):
            # Items of a typed list may leave out their own kind and apiVersion.
            item = {"kind": item_kind, "apiVersion": API_VERSION, **item}
            if item["kind"] != item_kind:
                problems.append(Problem("", "", None, "kind", f"a {kind} cannot hold a {show(item['kind'])}", loc))
                continue
        out.append((item, loc))
    return out, problems


def load_documents(text: str, source: str = "-") -> list[Resource]:
    """Decode and validate every resource in `text`; raise one ResourceError for all problems."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResourceError([Problem("", "", None, "", f"input is not UTF-8: {exc}", source)]) from None
    if not isinstance(text, str):
        raise ResourceError(f"expected manifest text, got {type(text).__name__}")
    docs, problems = _decode(text, source)
    resources: list[Resource] = []
    for index, doc in enumerate(docs, start=1):
        if doc is None:
            continue  # empty document, e.g. a trailing '---'
        items, expand_problems = _expand(doc, _where(source, index))
        problems += expand_problems
        for item, loc in items:
            try:
                resources.append(parse_resource(item, source=loc))
            except ResourceError as exc:
                problems += exc.problems
    if problems:
        raise ResourceError(problems)
    return resources


def dump_documents(
    resources: Sequence[Resource] | Resource, fmt: Literal["yaml", "json"] = "yaml", as_list: bool | None = None
) -> str:
    """Render resources as calicoctl prints them: one resource as a single object, several (or
    `as_list=True`) as an `XxxList` (or `List` when kinds are mixed) with `items`. YAML keys are
    sorted, as calicoctl's YAML output is; JSON keeps field order."""
    items = [resources] if isinstance(resources, Resource) else list(resources)
    if as_list is None:
        as_list = len(items) != 1
    data: dict[str, Any]
    if as_list:
        kinds = {r.KIND for r in items}
        list_kind = f"{kinds.pop()}List" if len(kinds) == 1 else "List"
        data = {"apiVersion": API_VERSION, "kind": list_kind, "items": [r.to_dict() for r in items]}
    else:
        data = items[0].to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        import yaml  # late, as in _decode_yaml

        from calico.resources.yamlio import Dumper

        return yaml.dump(data, Dumper=Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True)
    raise ValueError(f"unknown output format {fmt!r}: use yaml or json")

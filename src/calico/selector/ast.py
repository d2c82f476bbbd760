"""Selector syntax tree: immutable nodes in, canonical text (`str(node)`) out.

Nodes normalise themselves on construction so that equal meaning-preserving spellings give equal
trees: set values are sorted and de-duplicated, and nested `&&`/`||` of the same kind are flattened
(`(a && b) && c` is the same tree as `a && b && c`). Label keys and string values are checked:
keys use letters, digits and `-_./`; a value may hold one kind of quote but not both, since the
grammar has no escapes. A bad key or value raises `SelectorError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from calico.selector.errors import SelectorError

# One or more key characters; the selector grammar does not enforce Kubernetes' prefix/name layout.
KEY_RE = re.compile(r"[A-Za-z0-9_./-]+")


def check_key(key: str) -> None:
    if not isinstance(key, str) or KEY_RE.fullmatch(key) is None:
        raise SelectorError(f"invalid label key {key!r}: use letters, digits, '-', '_', '.', '/'")


def check_value(value: str) -> None:
    if not isinstance(value, str):
        raise SelectorError(f"selector values must be strings, not {type(value).__name__}")
    if '"' in value and "'" in value:
        raise SelectorError(f"value {value!r} holds both quote characters; selectors have no escapes")


def quote(value: str) -> str:
    """Double quotes unless the value contains one, then single quotes (no escapes exist)."""
    return f"'{value}'" if '"' in value else f'"{value}"'


class Node:
    """Base of all selector tree nodes."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class All(Node):
    """`all()` and the empty selector: matches everything."""

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global(Node):
    """`global()`: true here; callers restrict it to non-namespaced resources."""

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has(Node):
    """`has(key)`."""

    key: str

    def __post_init__(self) -> None:
        check_key(self.key)

    def __str__(self) -> str:
        return f"has({self.key})"


@dataclass(frozen=True, slots=True)
class _KeyValue(Node):
    key: str
    value: str

    def __post_init__(self) -> None:
        check_key(self.key)
        check_value(self.value)


@dataclass(frozen=True, slots=True)
class Equals(_KeyValue):
    """`key == "value"`: false when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} == {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class NotEquals(_KeyValue):
    """`key != "value"`: true when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} != {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Contains(_KeyValue):
    """`key contains "s"`: false when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} contains {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class StartsWith(_KeyValue):
    """`key starts with "s"`: false when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} starts with {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class EndsWith(_KeyValue):
    """`key ends with "s"`: false when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} ends with {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class _KeySet(Node):
    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        check_key(self.key)
        if isinstance(self.values, str):
            # A bare string would otherwise be split into characters.
            raise SelectorError("set values must be a collection of strings, not one string")
        values = tuple(self.values)
        for value in values:
            check_value(value)
        object.__setattr__(self, "values", tuple(sorted(set(values))))

    def _set_text(self) -> str:
        return "{" + ", ".join(quote(v) for v in self.values) + "}"


@dataclass(frozen=True, slots=True)
class In(_KeySet):
    """`key in {"a", "b"}`: false when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} in {self._set_text()}"


@dataclass(frozen=True, slots=True)
class NotIn(_KeySet):
    """`key not in {"a", "b"}`: true when the key is absent."""

    def __str__(self) -> str:
        return f"{self.key} not in {self._set_text()}"


@dataclass(frozen=True, slots=True)
class Not(Node):
    """`!operand`."""

    operand: Node

    def __post_init__(self) -> None:
        if not isinstance(self.operand, Node):
            raise SelectorError(f"operand must be a selector node, not {type(self.operand).__name__}")

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True, slots=True)
class _Chain(Node):
    operands: tuple[Node, ...]

    def __post_init__(self) -> None:
        flat: list[Node] = []
        for operand in self.operands:
            if type(operand) is type(self):
                # Associativity: merge a same-kind child so both spellings give one tree.
                flat.extend(operand.operands)  # type: ignore[attr-defined]
            elif isinstance(operand, Node):
                flat.append(operand)
            else:
                raise SelectorError(f"operands must be selector nodes, not {type(operand).__name__}")
        if len(flat) < 2:
            raise SelectorError(f"{type(self).__name__} needs at least two operands")
        object.__setattr__(self, "operands", tuple(flat))

    def _join(self, op: str) -> str:
        return "(" + op.join(str(o) for o in self.operands) + ")"


@dataclass(frozen=True, slots=True)
class And(_Chain):
    """`(a && b && ...)`."""

    def __str__(self) -> str:
        return self._join(" && ")


@dataclass(frozen=True, slots=True)
class Or(_Chain):
    """`(a || b || ...)`."""

    def __str__(self) -> str:
        return self._join(" || ")


def and_(operands: Iterable[Node]) -> Node:
    """Conjunction of one or more nodes; a single node is returned as is."""
    items = tuple(operands)
    return items[0] if len(items) == 1 else And(items)


def or_(operands: Iterable[Node]) -> Node:
    """Disjunction of one or more nodes; a single node is returned as is."""
    items = tuple(operands)
    return items[0] if len(items) == 1 else Or(items)


def children(node: Node) -> tuple[Node, ...]:
    """Direct sub-nodes (empty for leaves)."""
    if isinstance(node, Not):
        return (node.operand,)
    if isinstance(node, _Chain):
        return node.operands
    return ()


def node_key(node: Node) -> str | None:
    """The label key a leaf reads, or None for nodes that read no label directly."""
    return getattr(node, "key", None)

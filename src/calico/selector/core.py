"""The `Selector` value type: a checked syntax tree in; canonical text, hash and evaluator out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from calico.selector.ast import Global, Node, children, node_key
from calico.selector.compiler import compile_node
from calico.selector.errors import SelectorError

MAX_LENGTH = 4096
MAX_DEPTH = 100
# Canonical text is at most twice its source plus 5 (`all()` for ""), see parser docstring.
MAX_CANONICAL_LENGTH = 2 * MAX_LENGTH + 5


class Selector:
    """An immutable, hashable label selector.

    - `evaluate(labels) -> bool`: whether a label mapping matches (a compiled function stored
      on the instance, so calling it costs no method lookup).
    - `str(selector)`: canonical text; `parse(str(s)) == s`.
    - Equality and hashing follow the canonical text.
    - `global()` evaluates True; `uses_global` tells callers to restrict such selectors to
      non-namespaced resources themselves.
    """

    __slots__ = ("_hash", "_keys", "_root", "_text", "_uses_global", "evaluate")

    evaluate: Callable[[Mapping[str, str]], bool]

    def __init__(self, root: Node) -> None:
        if not isinstance(root, Node):
            raise SelectorError(f"a selector is built from a selector node, not {type(root).__name__}")
        depth, keys, uses_global = _inspect(root)
        if depth > MAX_DEPTH:
            raise SelectorError(f"selector nests operators more than {MAX_DEPTH} deep")
        text = str(root)
        if len(text) > MAX_CANONICAL_LENGTH:
            raise SelectorError(f"selector's canonical text exceeds {MAX_CANONICAL_LENGTH} characters")
        self._root = root
        self._text = text
        self._hash = hash(text)
        self._keys = keys
        self._uses_global = uses_global
        self.evaluate = compile_node(root)

    @property
    def root(self) -> Node:
        """The syntax tree."""
        return self._root

    @property
    def uses_global(self) -> bool:
        """True if `global()` appears anywhere in the selector."""
        return self._uses_global

    def label_keys(self) -> frozenset[str]:
        """Every label key the selector reads; its result depends on nothing else."""
        return self._keys

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Selector({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Selector):
            return self._hash == other._hash and self._text == other._text
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[Any, ...]:
        # The compiled closure cannot be pickled; rebuild it from the tree.
        return (Selector, (self._root,))


def _inspect(root: Node) -> tuple[int, frozenset[str], bool]:
    """Depth, label keys and use of global(), walked without recursion (trees may come from code)."""
    max_depth = 0
    keys: set[str] = set()
    uses_global = False
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        max_depth = max(max_depth, depth)
        if max_depth > MAX_DEPTH:
            break
        key = node_key(node)
        if key is not None:
            keys.add(key)
        elif type(node) is Global:
            uses_global = True
        stack.extend((child, depth + 1) for child in children(node))
    return max_depth, frozenset(keys), uses_global

"""Tree to evaluator: a selector `Node` in, a `labels -> bool` function built from closures out.

Closures avoid re-walking the tree on every call. Negations of leaves are folded into a single
leaf test (`!has(k)` becomes one `k not in labels` check), and always-true operands are dropped
from `&&` chains, so common selectors cost a handful of dict lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from calico.selector.ast import (
    All,
    And,
    Contains,
    EndsWith,
    Equals,
    Global,
    Has,
    In,
    Node,
    Not,
    NotEquals,
    NotIn,
    Or,
    StartsWith,
)

Evaluator = Callable[[Mapping[str, str]], bool]


def _true(labels: Mapping[str, str]) -> bool:
    return True


def _false(labels: Mapping[str, str]) -> bool:
    return False


def compile_node(node: Node) -> Evaluator:
    kind = type(node)
    if kind is All or kind is Global:
        return _true
    if kind is Not:
        return _compile_not(node.operand)  # type: ignore[attr-defined]
    if kind is And:
        return _compile_and([compile_node(o) for o in node.operands])  # type: ignore[attr-defined]
    if kind is Or:
        return _compile_or([compile_node(o) for o in node.operands])  # type: ignore[attr-defined]
    return _compile_leaf(node, negate=False)


def _compile_not(operand: Node) -> Evaluator:
    if type(operand) is Not:
        return compile_node(operand.operand)  # type: ignore[attr-defined]
    if type(operand) in (All, Global):
        return _false
    if type(operand) in (And, Or):
        inner = compile_node(operand)

        def negated(labels: Mapping[str, str]) -> bool:
            return not inner(labels)

        return negated
    return _compile_leaf(operand, negate=True)


def _compile_leaf(node: Node, negate: bool) -> Evaluator:
    kind = type(node)
    key: str = node.key  # type: ignore[attr-defined]
    if kind is Has:
        if negate:

            def lacks(labels: Mapping[str, str]) -> bool:
                return key not in labels

            return lacks

        def has(labels: Mapping[str, str]) -> bool:
            return key in labels

        return has
    if kind is In or kind is NotIn:
        values = frozenset(node.values)  # type: ignore[attr-defined]
        # Absent keys read as None, which is never in a set of strings.
        if (kind is In) != negate:

            def in_set(labels: Mapping[str, str]) -> bool:
                return labels.get(key) in values

            return in_set

        def not_in_set(labels: Mapping[str, str]) -> bool:
            return labels.get(key) not in values

        return not_in_set
    value: str = node.value  # type: ignore[attr-defined]
    if kind is Equals or kind is NotEquals:
        if (kind is Equals) != negate:

            def equals(labels: Mapping[str, str]) -> bool:
                return labels.get(key) == value

            return equals

        def not_equals(labels: Mapping[str, str]) -> bool:
            return labels.get(key) != value

        return not_equals
    if kind is Contains:
        test: Callable[[str], bool] = lambda v: value in v  # noqa: E731
    elif kind is StartsWith:
        test = lambda v: v.startswith(value)  # noqa: E731
    elif kind is EndsWith:
        test = lambda v: v.endswith(value)  # noqa: E731
    else:
        raise TypeError(f"not a selector node: {node!r}")

    def string_test(labels: Mapping[str, str]) -> bool:
        v = labels.get(key)
        return v is not None and test(v)

    if not negate:
        return string_test

    def not_string_test(labels: Mapping[str, str]) -> bool:
        v = labels.get(key)
        return v is None or not test(v)

    return not_string_test


def _compile_and(fns: list[Evaluator]) -> Evaluator:
    fns = [f for f in fns if f is not _true]
    if any(f is _false for f in fns):
        return _false
    if not fns:
        return _true
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        f1, f2 = fns

        def and2(labels: Mapping[str, str]) -> bool:
            return f1(labels) and f2(labels)

        return and2
    if len(fns) == 3:
        g1, g2, g3 = fns

        def and3(labels: Mapping[str, str]) -> bool:
            return g1(labels) and g2(labels) and g3(labels)

        return and3
    chain = tuple(fns)

    def and_n(labels: Mapping[str, str]) -> bool:
        # A plain loop: all() over a generator is noticeably slower on this hot path.
        for f in chain:  # noqa: SIM110
            if not f(labels):
                return False
        return True

    return and_n


def _compile_or(fns: list[Evaluator]) -> Evaluator:
    fns = [f for f in fns if f is not _false]
    if any(f is _true for f in fns):
        return _true
    if not fns:
        return _false
    if len(fns) == 1:
        return fns[0]
    if len(fns) == 2:
        f1, f2 = fns

        def or2(labels: Mapping[str, str]) -> bool:
            return f1(labels) or f2(labels)

        return or2
    chain = tuple(fns)

    def or_n(labels: Mapping[str, str]) -> bool:
        for f in chain:  # noqa: SIM110
            if f(labels):
                return True
        return False

    return or_n

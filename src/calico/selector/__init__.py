"""Calico label selectors: selector text in, `Selector` (canonical, hashable, fast `evaluate`) out.

    from calico.selector import parse
    sel = parse('app == "web" && tier in {"a", "b"} && !has(deprecated)')
    sel.evaluate({"app": "web", "tier": "a"})   # True
    str(sel)  # '(app == "web" && tier in {"a", "b"} && !has(deprecated))'

Grammar: `k == "v"`, `k != "v"` (true when k is absent), `k in {"a", "b"}`, `k not in {...}` (true
when absent), `has(k)`, `k contains "s"`, `k starts with "s"`, `k ends with "s"`, `!x`, `x && y`
(binds tighter than `||`), `x || y`, parentheses, `all()` and the empty selector (match everything),
`global()` (evaluates True; callers scope it to non-namespaced resources via `uses_global`).
Strings take single or double quotes and have no escapes. Label keys are runs of letters, digits
and `-_./`; whitespace between tokens is free.

Canonical form: values double-quoted (single-quoted only if the value holds a `"`), sets sorted
and de-duplicated, every `&&`/`||` chain in parentheses, e.g. `(a == "x" && b == "y")`.

Limits: selector text at most 4096 characters (`MAX_LENGTH`) and nesting at most 100 deep
(`MAX_DEPTH`); past them, and for any other bad input, `parse` raises `SelectorError` (a
ValueError whose message names the problem and the character position). Canonical text longer
than 4096 (canonical form adds spaces and parentheses) is still accepted, so `parse(str(s)) == s`.

`calico.selector.index.LabelIndex` keeps selector/item matches incrementally.
"""

from calico.selector.ast import Node
from calico.selector.core import MAX_DEPTH, MAX_LENGTH, Selector
from calico.selector.errors import SelectorError
from calico.selector.parser import parse

ALL: Selector = parse("all()")

__all__ = ["ALL", "MAX_DEPTH", "MAX_LENGTH", "Node", "Selector", "SelectorError", "parse"]

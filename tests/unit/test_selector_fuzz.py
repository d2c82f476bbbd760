"""Property tests for the selector language: junk never escapes as anything but SelectorError,
random trees round-trip through canonical text, and compiled evaluation agrees with a naive oracle.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico.selector import Selector, SelectorError, parse
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

KEYS = ["a", "b", "c", "has", "in", "not", "all", "with", "x.y/z-1_2"]
VALUES = ["", "1", "x", "xy", "yx", "it's", 'say "hi"', "a b", "&&"]

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
value_sets = st.lists(values, max_size=4).map(tuple)

leaves: st.SearchStrategy[Node] = st.one_of(
    st.just(All()),
    st.just(Global()),
    st.builds(Has, keys),
    st.builds(Equals, keys, values),
    st.builds(NotEquals, keys, values),
    st.builds(In, keys, value_sets),
    st.builds(NotIn, keys, value_sets),
    st.builds(Contains, keys, values),
    st.builds(StartsWith, keys, values),
    st.builds(EndsWith, keys, values),
)


def _extend(inner: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    operands = st.lists(inner, min_size=2, max_size=4).map(tuple)
    return st.one_of(st.builds(Not, inner), st.builds(And, operands), st.builds(Or, operands))


trees = st.recursive(leaves, _extend, max_leaves=12)
label_sets = st.dictionaries(keys, st.sampled_from([*VALUES, "1x", "xx", "zz"]), max_size=len(KEYS))


def oracle(node: Node, labels: Mapping[str, str]) -> bool:
    """Naive reading of the grammar's meaning, independent of the compiler."""
    match node:
        case All() | Global():
            return True
        case Has(key=k):
            return k in labels
        case Equals(key=k, value=v):
            return k in labels and labels[k] == v
        case NotEquals(key=k, value=v):
            return k not in labels or labels[k] != v
        case In(key=k, values=vs):
            return k in labels and labels[k] in vs
        case NotIn(key=k, values=vs):
            return k not in labels or labels[k] not in vs
        case Contains(key=k, value=v):
            return k in labels and v in labels[k]
        case StartsWith(key=k, value=v):
            return k in labels and labels[k].startswith(v)
        case EndsWith(key=k, value=v):
            return k in labels and labels[k].endswith(v)
        case Not(operand=o):
            return not oracle(o, labels)
        case And(operands=os):
            return all(oracle(o, labels) for o in os)
        case Or(operands=os):
            return any(oracle(o, labels) for o in os)
    raise AssertionError(node)


# ---- a deliberately sloppy renderer: any spelling the grammar allows ----------------------------

SPACES = ["", "", " ", "  ", "\t", "\n "]


def _q(rng: random.Random, value: str) -> str:
    if '"' in value:
        return f"'{value}'"
    if "'" in value:
        return f'"{value}"'
    return rng.choice(["'", '"']).join(["", value, ""])


def sloppy(node: Node, rng: random.Random, compact: bool = False) -> str:
    def ws() -> str:
        return "" if compact else rng.choice(SPACES)

    def gap() -> str:  # where the grammar needs at least one space (between words)
        return " " if compact else rng.choice([" ", "  ", "\t", "\n"])

    def sub(child: Node, needs_parens: bool) -> str:
        text = sloppy(child, rng, compact)
        if needs_parens or (not compact and rng.random() < 0.2):
            return f"({ws()}{text}{ws()})"
        return text

    match node:
        case All():
            return f"all{ws()}({ws()})"
        case Global():
            return f"global{ws()}({ws()})"
        case Has(key=k):
            return f"has{ws()}({ws()}{k}{ws()})"
        case Equals(key=k, value=v):
            return f"{k}{ws()}=={ws()}{_q(rng, v)}"
        case NotEquals(key=k, value=v):
            return f"{k}{ws()}!={ws()}{_q(rng, v)}"
        case In(key=k, values=vs) | NotIn(key=k, values=vs):
            listed = list(vs) + ([] if compact else rng.sample(list(vs), k=min(len(vs), rng.randint(0, 2))))
            rng.shuffle(listed)
            body = f"{ws()},{ws()}".join(_q(rng, v) for v in listed)
            op = "in" if isinstance(node, In) else f"not{gap()}in"
            return f"{k}{gap()}{op}{ws()}{{{ws()}{body}{ws()}}}"
        case Contains(key=k, value=v):
            return f"{k}{gap()}contains{ws()}{_q(rng, v)}"
        case StartsWith(key=k, value=v):
            return f"{k}{gap()}starts{gap()}with{ws()}{_q(rng, v)}"
        case EndsWith(key=k, value=v):
            return f"{k}{gap()}ends{gap()}with{ws()}{_q(rng, v)}"
        case Not(operand=o):
            return f"!{ws()}{sub(o, isinstance(o, And | Or))}"
        case And(operands=os):
            return f"{ws()}&&{ws()}".join(sub(o, isinstance(o, Or)) for o in os)
        case Or(operands=os):
            return f"{ws()}||{ws()}".join(sub(o, False) for o in os)
    raise AssertionError(node)


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(trees)
def test_canonical_round_trip(tree: Node) -> None:
    sel = Selector(tree)
    again = parse(str(sel))
    assert again == sel
    assert hash(again) == hash(sel)
    assert again.root == sel.root
    assert str(again) == str(sel)


@FAST
@given(trees, st.randoms(use_true_random=False))
def test_any_spelling_parses_to_the_same_tree(tree: Node, rng: random.Random) -> None:
    text = sloppy(tree, rng)
    assert parse(text) == Selector(tree), text


@FAST
@given(trees, st.randoms(use_true_random=False))
def test_canonical_at_most_twice_compact_source_plus_five(tree: Node, rng: random.Random) -> None:
    # The parser's acceptance of over-long canonical text relies on this bound.
    text = sloppy(tree, rng, compact=True)
    assert len(str(parse(text))) <= 2 * len(text) + 5


@FAST
@given(trees, st.lists(label_sets, min_size=1, max_size=5))
def test_evaluation_matches_oracle_and_survives_round_trip(tree: Node, labels: list[dict[str, str]]) -> None:
    sel = Selector(tree)
    again = parse(str(sel))
    for lab in labels:
        expected = oracle(tree, lab)
        assert sel.evaluate(lab) is expected
        assert again.evaluate(lab) is expected


def _parse_or_selector_error(text: str) -> None:
    try:
        sel = parse(text)
    except SelectorError as err:
        assert err.position is None or 0 <= err.position <= len(text)
        return
    assert parse(str(sel)) == sel


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_text_only_raises_selector_error(text: str) -> None:
    _parse_or_selector_error(text)


TOKENS = [
    "a", "b", "has", "all", "global", "in", "not", "contains", "starts", "ends", "with", "x.y/z",
    "(", ")", "{", "}", ",", "&&", "||", "&", "|", "!", "==", "!=", "=", '"v"', "'w'", '"', "'",
    " ", "\t", "", "€", "\x00",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=30), st.randoms(use_true_random=False))
def test_token_soup_only_raises_selector_error(tokens: list[str], rng: random.Random) -> None:
    _parse_or_selector_error(rng.choice([" ", ""]).join(tokens))


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["(", "!", "!(", "((!"]), st.integers(min_value=90, max_value=3000))
def test_deep_nesting_never_recurses_out(prefix: str, count: int) -> None:
    _parse_or_selector_error(prefix * count + "has(a)" + ")" * count)

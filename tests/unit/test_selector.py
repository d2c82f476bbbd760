"""Unit tests for the selector language: grammar features, canonical form, errors, limits."""

from __future__ import annotations

import copy
import pickle

import pytest

from calico.selector import ALL, MAX_DEPTH, MAX_LENGTH, Selector, SelectorError, parse
from calico.selector.ast import And, Equals, Has, In, Not, Or

WEB = {"app": "web", "tier": "frontend", "env": "prod"}


def ev(text: str, labels: dict[str, str]) -> bool:
    return parse(text).evaluate(labels)


# ---- grammar features: each with matching and non-matching cases -------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('app == "web"', WEB, True),
        ('app == "db"', WEB, False),
        ('missing == "web"', WEB, False),
        ('app == ""', {"app": ""}, True),
        ('app != "db"', WEB, True),
        ('app != "web"', WEB, False),
        ('missing != "x"', WEB, True),  # absent key: != is true
        ('tier in {"frontend", "backend"}', WEB, True),
        ('tier in {"backend"}', WEB, False),
        ('missing in {"a"}', WEB, False),
        ("tier in {}", WEB, False),
        ('tier not in {"backend"}', WEB, True),
        ('tier not in {"frontend", "x"}', WEB, False),
        ('missing not in {"a"}', WEB, True),  # absent key: not in is true
        ("tier not in {}", WEB, True),
        ("has(app)", WEB, True),
        ("has(missing)", WEB, False),
        ("has(empty)", {"empty": ""}, True),
        ("!has(missing)", WEB, True),
        ("!has(app)", WEB, False),
        ('!app == "web"', WEB, False),
        ('!app == "db"', WEB, True),
        ('!!app == "web"', WEB, True),
        ("all()", WEB, True),
        ("all()", {}, True),
        ("", {}, True),
        ("   \t\n", WEB, True),
        ("global()", WEB, True),
        ("global()", {}, True),
        ("!all()", WEB, False),
        ('tier contains "ont"', WEB, True),
        ('tier contains "back"', WEB, False),
        ('missing contains ""', WEB, False),
        ('tier contains ""', WEB, True),
        ('tier starts with "front"', WEB, True),
        ('tier starts with "end"', WEB, False),
        ('missing starts with ""', WEB, False),
        ('tier ends with "end"', WEB, True),
        ('tier ends with "front"', WEB, False),
        ('missing ends with ""', WEB, False),
        ('!tier ends with "front"', WEB, True),
        ('!missing contains "x"', WEB, True),
        ('app == "web" && env == "prod"', WEB, True),
        ('app == "web" && env == "dev"', WEB, False),
        ('app == "db" && env == "prod"', WEB, False),
        ('app == "db" || env == "prod"', WEB, True),
        ('app == "db" || env == "dev"', WEB, False),
        ('app == "web" || env == "dev"', WEB, True),
        ('app == "web" && tier in {"frontend", "b"} && !has(deprecated)', WEB, True),
        ('app == "web" && tier in {"frontend", "b"} && !has(deprecated)', {**WEB, "deprecated": "y"}, False),
        ('a == "1" && b == "2" && c == "3" && d == "4"', {"a": "1", "b": "2", "c": "3", "d": "4"}, True),
        ('a == "1" && b == "2" && c == "3" && d == "4"', {"a": "1", "b": "2", "c": "3"}, False),
        ('a == "1" || b == "2" || c == "3" || d == "4"', {"d": "4"}, True),
        ('a == "1" || b == "2" || c == "3" || d == "4"', {"e": "4"}, False),
        ('!(app == "web" && env == "prod")', WEB, False),
        ('!(app == "db" || env == "dev")', WEB, True),
        ('all() && app == "db"', WEB, False),
        ('!all() || app == "web"', WEB, True),
    ],
)
def test_evaluate(text: str, labels: dict[str, str], expected: bool) -> None:
    assert ev(text, labels) is expected


def test_keywords_usable_as_label_keys() -> None:
    labels = {"has": "1", "in": "2", "not": "3", "all": "4", "global": "5", "contains": "6", "with": "7"}
    assert ev('has == "1" && in == "2" && not == "3" && all == "4"', labels)
    assert ev('global == "5" && contains contains "6" && with starts with "7"', labels)
    assert ev('in in {"2"} && not not in {"x"} && has(has)', labels)
    for text in ['in in {"2"}', 'has == "1"', "has(has)", 'not not in {"x"}', 'starts starts with "a"']:
        sel = parse(text)
        assert parse(str(sel)) == sel


def test_key_characters() -> None:
    key = "projectcalico.org/name-x_1.2"
    sel = parse(f'{key} == "v"')
    assert sel.evaluate({key: "v"})
    assert sel.label_keys() == frozenset({key})
    assert parse("has(0abc)").evaluate({"0abc": ""})


# ---- precedence and grouping -------------------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    sel = parse('a == "1" || b == "2" && c == "3"')
    assert str(sel) == '(a == "1" || (b == "2" && c == "3"))'
    assert sel.evaluate({"a": "1"})
    assert sel.evaluate({"b": "2", "c": "3"})
    assert not sel.evaluate({"b": "2"})
    sel2 = parse('a == "1" && b == "2" || c == "3"')
    assert str(sel2) == '((a == "1" && b == "2") || c == "3")'
    assert sel2.evaluate({"c": "3"})
    assert not sel2.evaluate({"a": "1"})


def test_parentheses_override_precedence() -> None:
    sel = parse('(a == "1" || b == "2") && c == "3"')
    assert str(sel) == '((a == "1" || b == "2") && c == "3")'
    assert not sel.evaluate({"a": "1"})
    assert sel.evaluate({"a": "1", "c": "3"})


def test_not_binds_to_one_term() -> None:
    sel = parse('!a == "1" && b == "2"')
    assert str(sel) == '(!a == "1" && b == "2")'
    assert sel.evaluate({"b": "2"})
    assert not sel.evaluate({"a": "1", "b": "2"})
    assert parse('!(a == "1" && b == "2")').evaluate({"a": "1"})


def test_chains_are_flattened() -> None:
    flat = parse('a == "1" && b == "2" && c == "3"')
    assert parse('(a == "1" && b == "2") && c == "3"') == flat
    assert parse('a == "1" && (b == "2" && c == "3")') == flat
    assert str(flat) == '(a == "1" && b == "2" && c == "3")'
    assert parse('((((a == "1"))))') == parse('a == "1"')


# ---- quotes and canonical form -----------------------------------------------------------------


def test_quotes() -> None:
    assert parse("a == 'x'") == parse('a == "x"')
    assert str(parse("a == 'x'")) == 'a == "x"'
    sel = parse("""a == 'say "hi"'""")
    assert sel.evaluate({"a": 'say "hi"'})
    assert str(sel) == """a == 'say "hi"'"""  # the only quote that can hold it
    assert parse('a == "it\'s"').evaluate({"a": "it's"})
    assert parse('a == "x\\"').evaluate({"a": "x\\"})  # backslash is an ordinary character
    assert parse('a == "with space && || ! ( )"').evaluate({"a": "with space && || ! ( )"})
    assert parse("a in {'x', \"y\"}") == parse('a in {"y", "x"}')


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", "all()"),
        ("  ", "all()"),
        ("all()", "all()"),
        ("all ( )", "all()"),
        ("global()", "global()"),
        ("a=='x'", 'a == "x"'),
        ("a!='x'", 'a != "x"'),
        ("a in{'c','a','b','a'}", 'a in {"a", "b", "c"}'),
        ("a not in {'b','a'}", 'a not in {"a", "b"}'),
        ("a in {}", "a in {}"),
        ("has( a )", "has(a)"),
        ("! has(a)", "!has(a)"),
        ("a contains 'x'", 'a contains "x"'),
        ("a starts  with 'x'", 'a starts with "x"'),
        ("a ends\twith 'x'", 'a ends with "x"'),
        ("a=='x'&&b=='y'", '(a == "x" && b == "y")'),
        ("a=='x'||b=='y'", '(a == "x" || b == "y")'),
        ("!(a=='x'||b=='y')", '!(a == "x" || b == "y")'),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    sel = parse(text)
    assert str(sel) == canonical
    assert parse(canonical) == sel


def test_equality_and_hash() -> None:
    a = parse("a == 'x' && b in {'2', '1'}")
    b = parse('a=="x"&&b in {"1","2","1"}')
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != parse('a == "x"')
    assert parse("") == ALL == parse("all()")
    assert parse("global()") != ALL
    assert a != str(a)
    assert repr(a) == """Selector('(a == "x" && b in {"1", "2"})')"""


def test_pickle_and_copy() -> None:
    sel = parse('app == "web" && !has(x)')
    for clone in (pickle.loads(pickle.dumps(sel)), copy.copy(sel), copy.deepcopy(sel)):
        assert clone == sel
        assert clone.evaluate({"app": "web"})


def test_label_keys_and_uses_global() -> None:
    sel = parse('a == "1" && (has(b) || !c in {"x"}) && d contains "z"')
    assert sel.label_keys() == frozenset({"a", "b", "c", "d"})
    assert not sel.uses_global
    assert ALL.label_keys() == frozenset()
    assert parse("global()").uses_global
    assert parse('a == "x" || !global()').uses_global


def test_built_from_nodes() -> None:
    tree = And((Equals("a", "1"), And((Has("b"), Not(In("c", ("y", "x", "y")))))))
    sel = Selector(tree)
    assert str(sel) == '(a == "1" && has(b) && !c in {"x", "y"})'
    assert parse(str(sel)) == sel
    assert sel.root == parse(str(sel)).root
    assert Or((Equals("a", "1"), Equals("b", "2"))) == parse('a == "1" || b == "2"').root


@pytest.mark.parametrize(
    "build",
    [
        lambda: Equals("bad key", "v"),
        lambda: Equals("", "v"),
        lambda: Equals("k", "both \" and '"),
        lambda: In("k", "abc"),  # type: ignore[arg-type]
        lambda: And((Has("a"),)),
        lambda: Selector("a == 'x'"),  # type: ignore[arg-type]
    ],
)
def test_bad_nodes_rejected(build: object) -> None:
    with pytest.raises(SelectorError):
        build()  # type: ignore[operator]


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ('a == "x', 5, "unterminated string"),
        ("a == 'x", 5, "unterminated string"),
        ("a == x", 5, "expected a quoted string"),
        ("a ==", 4, "unexpected end of selector"),
        ('a = "x"', 2, "did you mean '=='"),
        ('a == "x" & b == "y"', 9, "did you mean '&&'"),
        ('a == "x" | b == "y"', 9, "did you mean '||'"),
        ('a == "x" b == "y"', 9, "expected '&&', '||' or end of selector"),
        ('a == "x")', 8, "unexpected ')'"),
        ('(a == "x"', 9, "expected ')'"),
        ("has(a", 5, "expected ')'"),
        ("has()", 4, "expected a label key"),
        ("has('a')", 4, "expected a label key"),
        ("foo(a)", 0, "unknown function 'foo'"),
        ("all(a)", 4, "takes no arguments"),
        ("a", 1, "expected '==', '!=', 'in', 'not in'"),
        ('a is "x"', 2, "after label key 'a'"),
        ('a in "x"', 5, "expected '{'"),
        ('a in {"x" "y"}', 10, "expected ',' or '}'"),
        ('a in {"x",}', 10, "expected a quoted string"),
        ('a not {"x"}', 6, "expected 'in'"),
        ('a starts "x"', 9, "expected 'with'"),
        ("a == 'x' && ", 12, "unexpected end of selector"),
        ("&& a", 0, "expected a label key"),
        ("a == 'x' €", 9, "unexpected character '€'"),
        ("!", 1, "unexpected end of selector"),
        ("()", 1, "unexpected ')'"),
    ],
)
def test_error_messages(text: str, position: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.position == position
    assert fragment in str(err)
    assert f"at position {position}" in str(err)


def test_non_string_rejected() -> None:
    with pytest.raises(SelectorError):
        parse(b"a == 'x'")  # type: ignore[arg-type]
    with pytest.raises(SelectorError):
        parse(None)  # type: ignore[arg-type]


# ---- limits ------------------------------------------------------------------------------------


def test_length_limit() -> None:
    at_limit = 'a == "' + "x" * (MAX_LENGTH - 7) + '"'
    assert len(at_limit) == MAX_LENGTH
    assert parse(at_limit).evaluate({"a": "x" * (MAX_LENGTH - 7)})
    padded = 'a == "x"' + " " * (MAX_LENGTH - 8)
    assert parse(padded) == parse('a == "x"')
    with pytest.raises(SelectorError, match="limit is 4096") as info:
        parse(at_limit + " ")
    assert info.value.position == MAX_LENGTH
    with pytest.raises(SelectorError, match="limit is 4096"):
        parse("(" * 100_000)


def test_canonical_text_longer_than_limit_round_trips() -> None:
    # Compact source within the limit whose canonical form (spaces, parentheses) is longer.
    terms = [f"k{i}=='v'" for i in range(400)]
    text = "&&".join(terms)
    text = text[: text.rfind("&&", 0, MAX_LENGTH)]
    assert len(text) <= MAX_LENGTH
    sel = parse(text)
    assert len(str(sel)) > MAX_LENGTH
    assert len(str(sel)) <= 2 * len(text) + 5
    assert parse(str(sel)) == sel
    # ...but non-canonical text of that length is still too long.
    with pytest.raises(SelectorError, match="limit"):
        parse(str(sel).replace(" && ", "  &&  "))


def test_depth_limit() -> None:
    ok = "(" * MAX_DEPTH + 'a == "x"' + ")" * MAX_DEPTH
    assert parse(ok) == parse('a == "x"')
    with pytest.raises(SelectorError, match="more than 100") as info:
        parse("(" * (MAX_DEPTH + 1) + 'a == "x"' + ")" * (MAX_DEPTH + 1))
    assert info.value.position == MAX_DEPTH
    assert parse("!" * (MAX_DEPTH - 1) + "has(a)").evaluate({})
    with pytest.raises(SelectorError, match="more than 100"):
        parse("!" * (MAX_DEPTH + 1) + "has(a)")
    with pytest.raises(SelectorError):
        parse("!" * 5000)
    with pytest.raises(SelectorError):
        parse("(" * 4000)


def test_tree_depth_limit() -> None:
    # Each parenthesis level adds an || over an && (two tree levels), so the tree limit bites first.
    def nest(pairs: int) -> str:
        text = 'a == "x"'
        for _ in range(pairs):
            text = f'({text} && b == "y" || c == "z")'
        return text

    deep = parse(nest(50))
    assert parse(str(deep)) == deep
    assert str(deep).count("(") == 100
    assert parse("!" + nest(49)).evaluate({"c": "z"}) is False
    with pytest.raises(SelectorError, match="nests operators more than 100") as info:
        parse("!" + nest(50))
    assert info.value.position == 0
    with pytest.raises(SelectorError, match="nests operators more than 100"):
        parse(nest(51))
    # Trees built in code are checked too.
    node = Has("a")
    for _ in range(MAX_DEPTH + 1):
        node = Not(node)
    with pytest.raises(SelectorError):
        Selector(node)

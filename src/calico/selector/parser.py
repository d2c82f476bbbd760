"""Recursive-descent parser: selector text in, `Selector` out (or `SelectorError`).

Grammar, loosest binding first:

    selector := <empty> | or
    or       := and ( "||" and )*
    and      := unary ( "&&" unary )*
    unary    := "!" unary | "(" or ")" | "has" "(" KEY ")" | "all" "(" ")" | "global" "(" ")"
              | KEY ( "==" STR | "!=" STR | "in" SET | "not" "in" SET
                    | "contains" STR | "starts" "with" STR | "ends" "with" STR )
    SET      := "{" [ STR ( "," STR )* ] "}"

Limits: text of at most `MAX_LENGTH` characters, and nesting at most `MAX_DEPTH` deep, counted
both in the text (open `(` plus pending `!`) and in the tree (nested `!`/`&&`/`||` nodes, which is
the nesting of the canonical form). Both bound the parser's recursion, so no RecursionError
escapes. Canonical text (`str(selector)`) can be longer than its source because it adds spaces
and parentheses (never more than twice as long plus 5); such canonical text is accepted even past
`MAX_LENGTH` so that `parse(str(s)) == s` always holds.
"""

from __future__ import annotations

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
from calico.selector.core import MAX_CANONICAL_LENGTH, MAX_DEPTH, MAX_LENGTH, Selector
from calico.selector.errors import SelectorError
from calico.selector.lexer import Kind, Token, tokenize

_OPERATORS = "'==', '!=', 'in', 'not in', 'contains', 'starts with' or 'ends with'"
_TERM_START = "a label key, '!', '(', 'has(', 'all()' or 'global()'"


def parse(text: str) -> Selector:
    """Parse selector text; raise `SelectorError` saying what is wrong and at which position."""
    if not isinstance(text, str):
        raise SelectorError(f"a selector must be a string, not {type(text).__name__}")
    if len(text) <= MAX_LENGTH:
        return Selector(_Parser(text).parse())
    too_long = SelectorError(f"selector is {len(text)} characters long; the limit is {MAX_LENGTH}", MAX_LENGTH)
    if len(text) > MAX_CANONICAL_LENGTH:
        raise too_long
    try:
        selector = Selector(_Parser(text).parse())
    except SelectorError:
        raise too_long from None
    if str(selector) != text:
        raise too_long
    return selector


class _Parser:
    __slots__ = ("_depth", "_i", "_tokens")

    def __init__(self, text: str) -> None:
        self._tokens = tokenize(text)
        self._i = 0
        self._depth = 0  # open '(' and pending '!' around the current position

    def parse(self) -> Node:
        if self._peek().kind is Kind.EOF:
            return All()
        node, _ = self._or()
        tok = self._peek()
        if tok.kind is not Kind.EOF:
            raise self._unexpected(tok, "'&&', '||' or end of selector")
        return node

    # Each rule returns (node, tree depth of node) so tree depth is checked where it arises.

    def _or(self) -> tuple[Node, int]:
        start = self._peek().pos
        first = self._and()
        if self._peek().kind is not Kind.OR:
            return first
        parts = [first]
        while self._peek().kind is Kind.OR:
            self._i += 1
            parts.append(self._and())
        return Or(tuple(n for n, _ in parts)), self._chain_depth(Or, parts, start)

    def _and(self) -> tuple[Node, int]:
        start = self._peek().pos
        first = self._unary()
        if self._peek().kind is not Kind.AND:
            return first
        parts = [first]
        while self._peek().kind is Kind.AND:
            self._i += 1
            parts.append(self._unary())
        return And(tuple(n for n, _ in parts)), self._chain_depth(And, parts, start)

    @staticmethod
    def _chain_depth(kind: type[Node], parts: list[tuple[Node, int]], start: int) -> int:
        # A same-kind operand (from parentheses) is flattened into this node: its own level vanishes.
        depth = 1 + max(d - 1 if type(n) is kind else d for n, d in parts)
        if depth > MAX_DEPTH:
            raise SelectorError(f"selector nests operators more than {MAX_DEPTH} deep", start)
        return depth

    def _unary(self) -> tuple[Node, int]:
        tok = self._peek()
        if tok.kind is Kind.NOT:
            self._enter(tok)
            self._i += 1
            node, depth = self._unary()
            self._depth -= 1
            if depth + 1 > MAX_DEPTH:
                raise SelectorError(f"selector nests operators more than {MAX_DEPTH} deep", tok.pos)
            return Not(node), depth + 1
        if tok.kind is Kind.LPAREN:
            self._enter(tok)
            self._i += 1
            result = self._or()
            self._expect(Kind.RPAREN, "')'")
            self._depth -= 1
            return result
        if tok.kind is Kind.IDENT:
            self._i += 1
            if self._peek().kind is Kind.LPAREN:
                return self._function(tok), 0
            return self._comparison(tok), 0
        raise self._unexpected(tok, _TERM_START)

    def _enter(self, tok: Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise SelectorError(f"selector nested more than {MAX_DEPTH} levels deep", tok.pos)

    def _function(self, name: Token) -> Node:
        self._i += 1  # the '('
        if name.text == "has":
            key = self._expect(Kind.IDENT, "a label key")
            self._expect(Kind.RPAREN, "')'")
            return Has(key.text)
        if name.text in ("all", "global"):
            self._expect(Kind.RPAREN, f"')' ({name.text}() takes no arguments)")
            return All() if name.text == "all" else Global()
        raise SelectorError(f"unknown function {name.text!r} (expected has(), all() or global())", name.pos)

    def _comparison(self, key: Token) -> Node:
        tok = self._peek()
        k = key.text
        if tok.kind is Kind.EQ:
            self._i += 1
            return Equals(k, self._string())
        if tok.kind is Kind.NE:
            self._i += 1
            return NotEquals(k, self._string())
        if tok.kind is Kind.IDENT:
            word = tok.text
            self._i += 1
            if word == "in":
                return In(k, self._set())
            if word == "not":
                self._expect_word("in")
                return NotIn(k, self._set())
            if word == "contains":
                return Contains(k, self._string())
            if word == "starts":
                self._expect_word("with")
                return StartsWith(k, self._string())
            if word == "ends":
                self._expect_word("with")
                return EndsWith(k, self._string())
        raise self._unexpected(tok, f"{_OPERATORS} after label key {k!r}")

    def _set(self) -> tuple[str, ...]:
        self._expect(Kind.LBRACE, "'{'")
        values: list[str] = []
        if self._peek().kind is Kind.RBRACE:
            self._i += 1
            return ()
        while True:
            values.append(self._string())
            tok = self._peek()
            self._i += 1
            if tok.kind is Kind.RBRACE:
                return tuple(values)
            if tok.kind is not Kind.COMMA:
                raise self._unexpected(tok, "',' or '}'")

    def _string(self) -> str:
        return self._expect(Kind.STRING, "a quoted string").text

    def _expect_word(self, word: str) -> None:
        tok = self._peek()
        if tok.kind is not Kind.IDENT or tok.text != word:
            raise self._unexpected(tok, repr(word))
        self._i += 1

    def _expect(self, kind: Kind, what: str) -> Token:
        tok = self._peek()
        if tok.kind is not kind:
            raise self._unexpected(tok, what)
        self._i += 1
        return tok

    def _peek(self) -> Token:
        return self._tokens[self._i]

    @staticmethod
    def _unexpected(tok: Token, expected: str) -> SelectorError:
        if tok.kind is Kind.EOF:
            return SelectorError(f"unexpected end of selector, expected {expected}", tok.pos)
        shown = tok.text if tok.kind is not Kind.STRING else f'"{tok.text}"'
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return SelectorError(f"unexpected {shown!r}, expected {expected}", tok.pos)

"""Selector tokenizer: selector text in, a list of `Token` (kind, text, position) out.

Words (`has`, `in`, `not`, `contains`, ...) come out as plain IDENT tokens; the parser decides
from context whether a word is a keyword or a label key, so labels named `in` or `has` still work.
Strings are `"..."` or `'...'` with no escape sequences. Bad input raises `SelectorError`.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from calico.selector.errors import SelectorError


class Kind(enum.Enum):
    IDENT = "label key or word"
    STRING = "quoted string"
    LPAREN = "'('"
    RPAREN = "')'"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    AND = "'&&'"
    OR = "'||'"
    NOT = "'!'"
    EQ = "'=='"
    NE = "'!='"
    EOF = "end of selector"


class Token(NamedTuple):
    kind: Kind
    text: str  # identifier text, or a string's contents without quotes
    pos: int


_IDENT_RE = re.compile(r"[A-Za-z0-9_./-]+")
# Only ASCII whitespace separates tokens; anything else outside a string is an error.
_SPACE = frozenset(" \t\n\r\f\v")
_SINGLE = {"(": Kind.LPAREN, ")": Kind.RPAREN, "{": Kind.LBRACE, "}": Kind.RBRACE, ",": Kind.COMMA}
_DOUBLE = {"&&": Kind.AND, "||": Kind.OR, "==": Kind.EQ, "!=": Kind.NE}


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    end = len(text)
    while pos < end:
        ch = text[pos]
        if ch in _SPACE:
            pos += 1
            continue
        kind = _SINGLE.get(ch)
        if kind is not None:
            tokens.append(Token(kind, ch, pos))
            pos += 1
            continue
        pair = text[pos : pos + 2]
        kind = _DOUBLE.get(pair)
        if kind is not None:
            tokens.append(Token(kind, pair, pos))
            pos += 2
            continue
        if ch == "!":
            tokens.append(Token(Kind.NOT, ch, pos))
            pos += 1
            continue
        if ch in "\"'":
            close = text.find(ch, pos + 1)
            if close < 0:
                raise SelectorError(f"unterminated string (opening {ch} has no closing {ch})", pos)
            tokens.append(Token(Kind.STRING, text[pos + 1 : close], pos))
            pos = close + 1
            continue
        match = _IDENT_RE.match(text, pos)
        if match is not None:
            tokens.append(Token(Kind.IDENT, match.group(), pos))
            pos = match.end()
            continue
        if ch in "&|=":
            raise SelectorError(f"unexpected {ch!r} (did you mean {ch * 2!r}?)", pos)
        raise SelectorError(f"unexpected character {ch!r}", pos)
    tokens.append(Token(Kind.EOF, "", end))
    return tokens

"""What Calico's iptables chains hold, as plain values, and the rule hashes read-back compares.

A `Rule` is iptables match and target text, and for a verdict rule its identity (`calico.dataplane.ruleids`
text), which its comment carries after the hash so the rule's kernel counters can be read back per identity;
a `Chain` is a name, its rules and the ipsets they name. Every rule's comment carries `cali:<hash>`, where
the hash chains over the rule's text (identity included) and the previous rule's hash, so read-back can tell
a chain is exactly as written by comparing its comment hashes in order. Pure.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rule:
    match: str  # iptables match text, "" for none
    target: str  # "-j DROP", "-g cali-fw-x", ...
    counter: str | None = None  # a verdict rule's identity (`ruleids.encode`), in its comment


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    set_refs: frozenset[str] = frozenset()  # ipsets its rules name (sets must outlive the rules)
    hashes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashes", rule_hashes(self.name, self.rules))


def b64hash(text: str, n: int) -> str:
    return base64.urlsafe_b64encode(hashlib.sha224(text.encode()).digest()).decode()[:n]


def rule_hashes(chain: str, rules: Iterable[Rule]) -> tuple[str, ...]:
    out = []
    prev = chain
    for rule in rules:
        text = f"{prev}\x00{rule.match}\x00{rule.target}"
        prev = b64hash(text if rule.counter is None else f"{text}\x00{rule.counter}", 16)
        out.append(prev)
    return tuple(out)


def jump_hash(builtin: str, target: str) -> str:
    return b64hash(f"jump\x00{builtin}\x00{target}", 16)

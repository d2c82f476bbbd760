"""`iptables-restore --noflush` text for Calico's chains, and what `iptables-save` shows of them.

In: `Chain`s to write, chain names to delete, built-in jumps to insert; or `iptables-save` output. Out: one
restore transaction for the filter table; `SavedTable`, the chains' comment hashes and our built-in jumps,
which read-back compares with what was written; from `iptables-save -c`, the counters of every rule that
carries an identity (`parse_counts`). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from calico.dataplane.counters import RawCount
from calico.dataplane.iptables.model import Chain, Rule, jump_hash
from calico.dataplane.iptables.names import BUILTIN_JUMPS, CHAIN_PREFIX


def rule_line(chain: str, rule: Rule, h: str) -> str:
    parts = ["-A", chain]
    if rule.match:
        parts.append(rule.match)
    comment = f"cali:{h}" if rule.counter is None else f"cali:{h} {rule.counter}"
    parts += ["-m comment --comment", f'"{comment}"', rule.target]
    return " ".join(parts)


def rule_lines(chains: Iterable[Chain]) -> list[str]:
    """`-A` lines filling `chains`, each rule with its comment hash."""
    return [rule_line(c.name, r, h) for c in chains for r, h in zip(c.rules, c.hashes, strict=True)]


def jump_comment(builtin: str, target: str) -> str:
    """The comment our jump from a built-in chain carries."""
    return f'-m comment --comment "cali:{jump_hash(builtin, target)}"'


def restore_text(
    write: Iterable[Chain], delete: Iterable[str] = (), jumps: Iterable[tuple[str, str]] = ()
) -> str:
    """One `iptables-restore --noflush` transaction for the filter table: each written chain is declared
    (created, or flushed when it exists) and refilled; deleted chains are flushed, then removed last, after
    every rule that jumped to them is gone; missing jumps from built-in chains are inserted at the top."""
    write = list(write)
    delete = sorted(set(delete) - {c.name for c in write})
    if not write and not delete and not jumps:
        return ""
    lines = ["*filter"]
    lines += [f":{c.name} - [0:0]" for c in write]
    lines += [f":{name} - [0:0]" for name in delete]
    lines += [f"-I {builtin} 1 {jump_comment(builtin, target)} -j {target}" for builtin, target in jumps]
    lines += rule_lines(write)
    lines += [f"-X {name}" for name in delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


_COMMENT = re.compile(r'--comment "?cali:([A-Za-z0-9_\-]+)"?')


@dataclass(slots=True)
class SavedTable:
    """What read-back compares: our chains' comment hashes in order, and which built-in jumps exist."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jumps: set[tuple[str, str]] = field(default_factory=set)


def parse_save(text: str) -> SavedTable:
    """`iptables-save -t filter` output -> our chains (`cali-` only) and our jumps from built-in chains."""
    saved = SavedTable()
    hashes: dict[str, list[str]] = {}
    builtins = {b for b, _ in BUILTIN_JUMPS}
    for line in text.splitlines():
        if line.startswith(":"):
            name = line[1:].split(" ", 1)[0]
            if name.startswith(CHAIN_PREFIX):
                hashes.setdefault(name, [])
        elif line.startswith("-A "):
            name = line.split(" ", 2)[1]
            if name.startswith(CHAIN_PREFIX):
                m = _COMMENT.search(line)
                hashes.setdefault(name, []).append(m.group(1) if m else "?")
            elif name in builtins:
                for builtin, target in BUILTIN_JUMPS:
                    if builtin == name and line.endswith(f"-j {target}"):
                        saved.jumps.add((builtin, target))
    saved.chains = {k: tuple(v) for k, v in hashes.items()}
    return saved


_COUNTED = re.compile(r'^\[(\d+):(\d+)\] -A (\S+) .*--comment "?cali:([A-Za-z0-9_\-]+) ([A-Za-z][A-Za-z0-9_./\-]*)"?')


def parse_counts(text: str, where: str) -> list[RawCount]:
    """`iptables-save -c` output -> a RawCount per rule of ours that carries an identity, keyed by `where` (the
    family and table), its chain and its hash (which changes when the chain is rewritten differently)."""
    out = []
    for line in text.splitlines():
        if line.startswith("[") and "cali:" in line:
            m = _COUNTED.match(line)
            if m is not None and m.group(3).startswith(CHAIN_PREFIX):
                packets, nbytes, chain, h, rule = m.groups()
                out.append(RawCount(f"{where}/{chain}/{h}", rule, int(packets), int(nbytes)))
    return out

"""Calico's chains in the small tables beside filter: raw and mangle (the untracked and pre-DNAT stages,
`stages`) and nat (metadata DNAT, floating IPs and natOutgoing, `nat`).

In: the chains one table should hold of ours, and what `iptables-save -t <table>` shows. Out: `SavedSide`, what
read-back compares (our chains' comment hashes in order and our jumps from built-in chains), and one
`iptables-restore --noflush` text that rewrites the table's chains of ours whole, inserts the built-in jumps
to chains that exist and deletes those to chains that go, and removes our chains no longer wanted ("" when the
table already holds exactly that). These tables hold a handful of chains, so whole rewrites stay cheap. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from calico.dataplane.iptables.model import Chain
from calico.dataplane.iptables.text import jump_comment, parse_save, rule_lines

SIDE_TABLES = ("raw", "mangle", "nat")
# Per table, the built-in chains that jump to ours (each jump exists while its target chain does).
BUILTINS = {
    "raw": (("PREROUTING", "cali-PREROUTING"), ("OUTPUT", "cali-OUTPUT")),
    "mangle": (("PREROUTING", "cali-PREROUTING"),),
    "nat": (("PREROUTING", "cali-PREROUTING"), ("OUTPUT", "cali-OUTPUT"), ("POSTROUTING", "cali-POSTROUTING")),
}


@dataclass(slots=True)
class SavedSide:
    """Ours in one table as `iptables-save` shows it: chains (rule comment hashes in order) and our jumps."""

    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    jumps: set[tuple[str, str]] = field(default_factory=set)


def parse_side(table: str, text: str) -> SavedSide:
    saved = parse_save(text)
    jumps = {
        (b, t) for b, t in BUILTINS[table]
        if any(ln.startswith(f"-A {b} ") and ln.endswith(f"-j {t}") for ln in text.splitlines())
    }
    return SavedSide(saved.chains, jumps)


def expected_side(table: str, chains: list[Chain]) -> SavedSide:
    names = {c.name for c in chains}
    return SavedSide({c.name: c.hashes for c in chains}, {(b, t) for b, t in BUILTINS[table] if t in names})


def side_restore_text(table: str, chains: list[Chain], kernel: SavedSide) -> str:
    """One transaction making `table` hold exactly `chains` of ours ("" when it already does)."""
    want = expected_side(table, chains)
    if want == kernel:
        return ""
    lines = [f"*{table}"]
    names = {c.name for c in chains}
    stale = sorted(set(kernel.chains) - names)
    lines += [f":{c.name} - [0:0]" for c in chains] + [f":{n} - [0:0]" for n in stale]
    for builtin, target in BUILTINS[table]:
        comment = jump_comment(builtin, target)
        if (builtin, target) in want.jumps and (builtin, target) not in kernel.jumps:
            lines.append(f"-I {builtin} 1 {comment} -j {target}")
        elif (builtin, target) not in want.jumps and (builtin, target) in kernel.jumps:
            lines.append(f"-D {builtin} {comment} -j {target}")
    lines += rule_lines(chains)
    lines += [f"-X {n}" for n in stale]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"

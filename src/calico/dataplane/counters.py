"""Kernel counters of verdict rules, as both firewall backends read them, and their totals kept monotonic.

In: what a backend read from the kernel: one `RawCount` per counting place (an nft named counter; an iptables
rule), keyed so that the same place read twice has the same key, with the rule identity it counts for
(`calico.dataplane.ruleids` text). Out: `CounterTotals.update` gives packets and bytes per identity that never
go down while the identity stays in the kernel, even when a place is rewritten. Pure.

What the kernel keeps, and what is added here:
  - nftables: a named counter object lives as long as some rule counts into it, so rewriting a chain keeps its
    counts (and a whole-table replacement starts the new counters from the old values: `NftBackend`). Nothing
    is lost except when someone else deletes the table.
  - iptables: a rule's counters start at zero whenever its chain is rewritten (a policy changed, an endpoint's
    group changed). A place that disappears, or whose counts went down, has its last read values carried into
    its identity's total here; only what it counted between the last read and the rewrite is lost.
An identity that is no longer in the kernel at all is forgotten (its series ends; a later one starts at 0).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class RawCount(NamedTuple):
    key: str  # the counting place: stable while it is not rewritten (nft: counter name; iptables: chain + hash)
    rule: str  # the identity it counts for (`ruleids.encode`)
    packets: int
    bytes: int


Totals = dict[str, tuple[int, int]]  # identity text -> (packets, bytes)


class CounterTotals:
    """Folds successive reads into monotonic totals per identity."""

    def __init__(self) -> None:
        self._last: dict[str, RawCount] = {}
        self._carry: dict[str, tuple[int, int]] = {}

    def update(self, raw: Iterable[RawCount]) -> Totals:
        current = {r.key: r for r in raw}
        for key, old in self._last.items():
            new = current.get(key)
            if new is None or new.rule != old.rule or new.packets < old.packets or new.bytes < old.bytes:
                p, b = self._carry.get(old.rule, (0, 0))
                self._carry[old.rule] = (p + old.packets, b + old.bytes)  # rewritten: keep what it had counted
        self._last = current
        totals: Totals = {}
        for r in current.values():
            p, b = totals.get(r.rule, (0, 0))
            totals[r.rule] = (p + r.packets, b + r.bytes)
        for rule in [r for r in self._carry if r not in totals]:
            del self._carry[rule]  # gone from the kernel: nothing left to continue
        for rule, (cp, cb) in self._carry.items():
            p, b = totals[rule]
            totals[rule] = (p + cp, b + cb)
        return totals

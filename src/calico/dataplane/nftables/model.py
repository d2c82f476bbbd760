"""What Calico's nftables table holds, as plain values: sets, verdict maps and chains of rule text.

The renderers (`sets`, `rules`, `endpoints`, `hep_chains`, `table`) build these, the planner (`diff`) compares
them, `text` and `ops` write them out, and the fake transport (`fake`) keeps its table in the same terms.
Pure data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_COUNTER_REF = re.compile(r'counter name "([^"]+)"')


@dataclass(frozen=True, slots=True)
class NftSet:
    name: str
    type: str  # "ipv4_addr", "ipv4_addr . inet_proto . inet_service", ...
    interval: bool
    elements: frozenset[str]


@dataclass(frozen=True, slots=True)
class NftChain:
    name: str
    rules: tuple[str, ...]  # without their comments (text.tagged adds them)
    hook: str | None = None  # base chain header, e.g. "type filter hook forward priority filter; policy accept;"
    set_refs: frozenset[str] = frozenset()  # named sets its rules use (sets must outlive the rules)
    # counter objects its rules count into (`names.count`; they too must outlive the rules): from the rules
    counter_refs: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counter_refs", counter_names(self.rules))


def counter_names(rules: tuple[str, ...]) -> frozenset[str]:
    return frozenset(m for r in rules if "counter name" in r for m in _COUNTER_REF.findall(r))


@dataclass(slots=True)
class TableModel:
    sets: dict[str, NftSet] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)  # map name -> {ifname: verdict}
    chains: dict[str, NftChain] = field(default_factory=dict)
    counters: set[str] = field(default_factory=set)  # named counter objects (rule identities, `ruleids`)
    limits: dict[str, str] = field(default_factory=dict)  # named limits: name -> "rate N/second burst M packets"

    def copy(self) -> TableModel:
        """A model to change without touching this one (values are immutable; the dicts are copied)."""
        return TableModel(dict(self.sets), {k: dict(v) for k, v in self.maps.items()}, dict(self.chains),
                          set(self.counters), dict(self.limits))

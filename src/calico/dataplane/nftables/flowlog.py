"""Flow logs in nftables: each verdict rule gets a twin before it that logs the packet to NFLOG.

In: chains as the renderers made them, and the `FlowLogRules` (None: flow logs off: chains unchanged). Out: the
same chains where every rule counting into a logged identity (`ruleids.LOGGED`) is preceded by its match with
`[numgen random mod 100 < P] limit name "flowlogs" log prefix "<identity>" group G`. The twin cannot be the rule
itself: over its limit a `limit` stops the rule, verdict included. The limit is one named object for the whole
table, so a flood anywhere is logged at most `rate` times a second in all. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.dataplane import ruleids as rid
from calico.dataplane.config import FlowLogRules
from calico.dataplane.nftables.model import NftChain

LIMIT = "flowlogs"
_COUNTER = 'counter name "'


def limit_spec(rules: FlowLogRules) -> str:
    return f"rate {rules.rate}/second burst {rules.burst} packets"


def _twin(rule: str, rules: FlowLogRules) -> str | None:
    at = rule.find(_COUNTER)
    if at < 0:
        return None
    head, identity = rule[:at], rule[at + len(_COUNTER):].split('"', 1)[0]
    if rid.decode(identity).kind not in rid.LOGGED:
        return None
    sample = f"numgen random mod 100 < {rules.sample_percent} " if rules.sample_percent < 100 else ""
    return f'{head}{sample}limit name "{LIMIT}" log prefix "{identity}" group {rules.group}'


def logged(chain: NftChain, rules: FlowLogRules | None) -> NftChain:
    if rules is None or not chain.counter_refs:
        return chain
    return NftChain(chain.name, tuple(rid.with_twins(chain.rules, lambda r: _twin(r, rules))), chain.hook,
                    chain.set_refs)


def all_logged(chains: Iterable[NftChain], rules: FlowLogRules | None) -> list[NftChain]:
    return [logged(c, rules) for c in chains]

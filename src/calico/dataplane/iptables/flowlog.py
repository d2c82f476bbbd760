"""Flow logs in iptables: each verdict rule gets a twin before it that logs the packet to NFLOG.

In: chains as the renderers made them, and the `FlowLogRules` (None: flow logs off: chains unchanged). Out: the
same chains where every rule carrying a logged identity (`ruleids.LOGGED`) is preceded by its match with
`[-m statistic --mode random --probability P] -m hashlimit ... --hashlimit-name cali-flowlogs -j NFLOG
--nflog-group G --nflog-prefix <identity>`. NFLOG does not decide, so the verdict rule follows. Every twin names
the same hashlimit (no --hashlimit-mode: one bucket), so the whole host logs at most `rate` packets a second,
as nftables' named limit does. Pure.
"""

from __future__ import annotations

from calico.dataplane import ruleids as rid
from calico.dataplane.config import FlowLogRules
from calico.dataplane.iptables.model import Chain, Rule

LIMIT_NAME = "cali-flowlogs"
COPY_BYTES = 128  # headers are all the collector reads


def _twin(rule: Rule, rules: FlowLogRules) -> Rule | None:
    if rule.counter is None or rid.decode(rule.counter).kind not in rid.LOGGED:
        return None
    extra = []
    if rules.sample_percent < 100:
        extra.append(f"-m statistic --mode random --probability {rules.sample_percent / 100:.2f}")
    extra.append(f"-m hashlimit --hashlimit-upto {rules.rate}/sec --hashlimit-burst {rules.burst} "
                 f"--hashlimit-name {LIMIT_NAME}")
    target = (f"-j NFLOG --nflog-group {rules.group} --nflog-prefix {rule.counter} "
              f"--nflog-size {COPY_BYTES}")
    return Rule(" ".join([rule.match, *extra]).strip(), target)


def logged(chain: Chain, rules: FlowLogRules | None) -> Chain:
    if rules is None or all(r.counter is None for r in chain.rules):
        return chain
    return Chain(chain.name, tuple(rid.with_twins(chain.rules, lambda r: _twin(r, rules))), chain.set_refs)

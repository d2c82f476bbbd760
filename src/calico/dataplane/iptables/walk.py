"""The tier/policy/profile walk (`calico.dataplane.tiers`) spelled as iptables rules.

In: the walk's `Step`s, the direction and the stage. Out: `Rule`s for an endpoint's policy group, a host
endpoint chain or a stage chain: policies and profiles are jumped to, their verdict read back from the mark
bits; every drop carries its identity (`tiers.step_id`). Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from calico.dataplane.iptables.model import Rule
from calico.dataplane.iptables.names import policy_chain, profile_chain
from calico.dataplane.marks import MARK_ACCEPT, MARK_BOTH, MARK_PASS
from calico.dataplane.ruleids import Stage
from calico.dataplane.tiers import Step, StepKind, step_id

ACCEPTED = f"-m mark --mark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}"
NOT_PASSED = f"-m mark --mark 0x0/{MARK_PASS:#x}"
RETURN_IF_ACCEPTED = Rule(ACCEPTED, "-j RETURN")


def clear(bits: int) -> Rule:
    return Rule("", f"-j MARK --set-xmark 0x0/{bits:#x}")


def walk_rules(steps: Iterable[Step], inbound: bool, stage: Stage, accepted: Rule = RETURN_IF_ACCEPTED) -> list[Rule]:
    """`accepted` follows each policy and profile jump: what to do once one has allowed the packet."""
    return list(_spelled(tuple(steps), inbound, stage, accepted))


@functools.lru_cache(maxsize=1 << 12)  # endpoints with the same policies walk the same steps
def _spelled(steps: tuple[Step, ...], inbound: bool, stage: Stage, accepted: Rule) -> tuple[Rule, ...]:
    out: list[Rule] = []
    for step in steps:
        sid = step_id(step, inbound, stage)
        counted = None if sid is None else sid.text
        match step.kind:
            case StepKind.NEXT_TIER:
                out.append(clear(MARK_PASS))  # a Pass in the previous tier must not skip this one
            case StepKind.STAGE_TIER:
                out.append(clear(MARK_BOTH))
            case StepKind.POLICY:
                assert not isinstance(step.target, str | None)
                out += [Rule(NOT_PASSED, f"-j {policy_chain(step.target, inbound)}"), accepted]
            case StepKind.MISSING_POLICY | StepKind.TIER_DROP:
                out.append(Rule(NOT_PASSED, "-j DROP", counted))  # out-of-order reference or tier default: fail closed
            case StepKind.PROFILE:
                assert isinstance(step.target, str)
                out += [Rule("", f"-j {profile_chain(step.target, inbound)}"), accepted]
            case StepKind.MISSING_PROFILE | StepKind.DROP:
                out.append(Rule("", "-j DROP", counted))
            case StepKind.RETURN:
                out.append(Rule("", "-j RETURN"))
    return tuple(out)

"""The tier/policy/profile walk (`calico.dataplane.tiers`) spelled as nft rules.

In: the walk's `Step`s, the direction and the stage. Out: rule text for an endpoint chain, a host endpoint
chain or a stage chain: policies and profiles are `jump`ed to, their verdict read back from the mark bits;
every drop counts into the counter of its identity (`tiers.step_id`). Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from calico.dataplane.marks import MARK_ACCEPT, MARK_BOTH, MARK_PASS
from calico.dataplane.nftables.names import count, policy_chain, profile_chain
from calico.dataplane.ruleids import Stage
from calico.dataplane.tiers import Step, StepKind, step_id

MARK_CLEAR = 0xFFFFFFFF & ~MARK_BOTH
CLEAR_MARKS = f"meta mark set meta mark & {MARK_CLEAR:#010x}"
NOT_PASSED = f"meta mark & {MARK_PASS:#010x} == 0"
RETURN_IF_ACCEPTED = f"meta mark & {MARK_ACCEPT:#010x} != 0 return"


def walk_rules(steps: Iterable[Step], inbound: bool, stage: Stage, accepted: str = RETURN_IF_ACCEPTED) -> list[str]:
    """`accepted` follows each policy and profile jump: what to do once one has allowed the packet."""
    return list(_spelled(tuple(steps), inbound, stage, accepted))


@functools.lru_cache(maxsize=1 << 12)  # endpoints with the same policies walk the same steps
def _spelled(steps: tuple[Step, ...], inbound: bool, stage: Stage, accepted: str) -> tuple[str, ...]:
    lines: list[str] = []
    for step in steps:
        sid = step_id(step, inbound, stage)
        counted = "" if sid is None else count(sid) + " "
        match step.kind:
            case StepKind.NEXT_TIER | StepKind.STAGE_TIER:
                lines.append(CLEAR_MARKS)  # a Pass of the previous tier must not skip this one
            case StepKind.POLICY:
                assert not isinstance(step.target, str | None)
                lines += [f"{NOT_PASSED} jump {policy_chain(step.target, inbound)}", accepted]
            case StepKind.MISSING_POLICY | StepKind.TIER_DROP:
                lines.append(f"{NOT_PASSED} {counted}drop")  # out-of-order reference or tier default: fail closed
            case StepKind.PROFILE:
                assert isinstance(step.target, str)
                lines += [f"jump {profile_chain(step.target, inbound)}", accepted]
            case StepKind.MISSING_PROFILE | StepKind.DROP:
                lines.append(f"{counted}drop")
            case StepKind.RETURN:
                lines.append("return")
    return tuple(lines)

"""The order in which an endpoint chain evaluates tiers, policies and profiles: one walk, two renderers.

In: what an endpoint chain polices (`Policed`: its tiers, then its profiles), the direction, and which
policies and profiles the dataplane knows. Out: a list of backend-neutral `Step`s that the nftables and
iptables renderers each spell in their own rules, so the two cannot disagree on the order or on what fails
closed. Pure.

Semantics (Calico's): tiers in order; inside a tier each policy that applies in this direction, in order.
A policy's Allow ends the walk (accepted), its Pass skips the rest of the tier, its Deny drops. A tier whose
policies applied but did not decide drops, unless its defaultAction is Pass. Then the profiles, in order;
then drop. A policy or profile named before the dataplane knows it drops (fail closed until it arrives).

The untracked and pre-DNAT stages walk their tiers the same way, but there nothing decided goes on
(`stage_steps`): no tier-end drop, no profiles, and a `RETURN` at the end.

Each step that drops has one identity (`step_id`, from `calico.dataplane.ruleids`): both renderers put it on
the rule's kernel counter, so the two backends count the same drops under the same names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import Enum, auto
from typing import NamedTuple

from calico.calculation import events as ev
from calico.dataplane import ruleids as rid


class StepKind(Enum):
    NEXT_TIER = auto()  # a tier after the first begins: the previous tier's Pass must not skip it
    STAGE_TIER = auto()  # a stage's tier begins: clear every verdict bit
    POLICY = auto()  # run policy `target` unless passed; accepted: stop
    MISSING_POLICY = auto()  # named but not known: drop unless passed
    TIER_DROP = auto()  # the tier (`target`) applied and did not decide (defaultAction Deny): drop unless passed
    PROFILE = auto()  # run profile `target`; accepted: stop
    MISSING_PROFILE = auto()  # named but not known: drop
    DROP = auto()  # nothing allowed the packet
    RETURN = auto()  # a stage's end: what nothing decided goes on


class Step(NamedTuple):  # a tuple: built for every endpoint chain, so cheap to make
    kind: StepKind
    target: ev.PolicyID | str | None = None


@dataclass(frozen=True, slots=True)
class Policed:
    """What an endpoint chain evaluates: tiers, then profiles."""

    tiers: tuple[ev.TierInfo, ...]
    profile_ids: tuple[str, ...]


def applying(tier: ev.TierInfo, inbound: bool) -> tuple[ev.PolicyID, ...]:
    return tier.ingress_policies if inbound else tier.egress_policies


def has_direction(tiers: Iterable[ev.TierInfo], inbound: bool) -> bool:
    return any(applying(t, inbound) for t in tiers)


def endpoint_steps(
    policed: Policed | ev.WorkloadEndpointUpdate, inbound: bool,
    known_policies: Collection[ev.PolicyID], known_profiles: Collection[str],
) -> list[Step]:
    steps: list[Step] = []
    for tier in policed.tiers:
        pids = applying(tier, inbound)
        if not pids:
            continue  # no policy of this tier applies in this direction: the tier is skipped
        if steps:
            steps.append(Step(StepKind.NEXT_TIER))
        for pid in pids:
            steps.append(Step(StepKind.POLICY if pid in known_policies else StepKind.MISSING_POLICY, pid))
        if tier.default_action.lower() != "pass":
            steps.append(Step(StepKind.TIER_DROP, tier.name))
    for prof in policed.profile_ids:
        if prof not in known_profiles:
            steps.append(Step(StepKind.MISSING_PROFILE, prof))
            break
        steps.append(Step(StepKind.PROFILE, prof))
    steps.append(Step(StepKind.DROP))
    return steps


def stage_steps(tiers: Iterable[ev.TierInfo], inbound: bool, known_policies: Collection[ev.PolicyID]) -> list[Step]:
    steps: list[Step] = []
    for tier in tiers:
        pids = applying(tier, inbound)
        if pids:
            steps.append(Step(StepKind.STAGE_TIER))
            steps += [Step(StepKind.POLICY if pid in known_policies else StepKind.MISSING_POLICY, pid) for pid in pids]
    steps.append(Step(StepKind.RETURN))
    return steps


def step_id(step: Step, inbound: bool, stage: rid.Stage) -> rid.RuleID | None:
    """The identity of a step's drop (None for a step that decides nothing itself)."""
    match step.kind:
        case StepKind.TIER_DROP:
            assert isinstance(step.target, str)
            return rid.tier_default(step.target, inbound, stage)
        case StepKind.MISSING_POLICY | StepKind.MISSING_PROFILE:
            assert step.target is not None
            return rid.not_programmed(step.target, inbound, stage)
        case StepKind.DROP:
            return rid.verdict(rid.Kind.NO_MATCH, inbound, stage)
    return None

"""What an explanation says: plain data, built by `walk`, shown by `render` (terminal tree, JSON). Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RuleTrace:
    index: int | None  # the rule's position as written; None for a rule the graph put there (fail closed)
    action: str
    matched: bool
    why_not: list[str]  # the fields that did not match (empty when it matched)
    rule: dict[str, Any] | None  # the rule as written
    packets: int | None = None  # what its kernel counter counted, summed over the hosts (`--counters`)
    bytes: int | None = None


@dataclass
class PolicyTrace:
    kind: str  # "policy" or "profile"
    name: str  # policy: its name (namespace/name for a namespaced one); profile: its name
    outcome: str  # allow, deny, pass, no-match, skipped (a Pass earlier in the tier), missing (fail closed)
    rules: list[RuleTrace] = field(default_factory=list)
    decided_by: int | None = None  # index into `rules` of the rule that decided, if one did
    tier: str = ""  # a policy's tier, namespace (None: global) and bare name, for looking up its counters
    namespace: str | None = None
    resource: str = ""
    counted_on: list[str] | None = None  # hosts whose Felix reported counters (`--counters`)


@dataclass
class TierTrace:
    name: str
    default_action: str
    policies: list[PolicyTrace] = field(default_factory=list)
    outcome: str = "no-match"  # allow, deny, pass (a Pass rule), end-deny / end-pass (the default action)


@dataclass
class StageTrace:
    stage: str  # the direction at `endpoint`: "egress" (leaving it) or "ingress" (entering it)
    endpoint: str
    node: str | None
    # Which policy: "normal" (a workload's, or a host endpoint's for traffic to / from the host), "untracked"
    # (doNotTrack), "preDNAT", "forward" (a host endpoint's applyOnForward policy, forwarded traffic).
    kind: str = "normal"
    checks: list[str] = field(default_factory=list)  # what passed before policy (anti-spoofing, failsafes)
    tiers: list[TierTrace] = field(default_factory=list)
    profiles: list[PolicyTrace] = field(default_factory=list)
    verdict: str = "deny"  # allow, deny, or none (an untracked / preDNAT stage that decided nothing)
    reason: str = ""
    # What decided, as Felix's rule identities name it: "rule" (a policy's or profile's), or one of Felix's own
    # verdicts: tier_default, profile_fallthrough, anti_spoofing, fail_closed, not_programmed, failsafe; or
    # hep_allowed (a host endpoint stage skipped: an untracked / preDNAT stage already allowed the packet).
    decided: str = ""


@dataclass
class Verdict:
    stages: list[StageTrace]
    verdict: str  # "allow" or "deny"
    reason: str


@dataclass
class Explanation:
    flow: str
    source: str
    destination: str
    revision: int
    enforced: Verdict
    pending: Verdict | None = None  # with staged policies in force, when there are any
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.enforced.verdict

    def policies(self) -> list[tuple[StageTrace, PolicyTrace]]:
        """Every policy and profile the enforced walk looked at, with its stage."""
        return [(s, p) for s in self.enforced.stages for p in [*(p for t in s.tiers for p in t.policies),
                                                                  *s.profiles]]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"verdict": self.verdict, "reason": self.enforced.reason}
        if self.pending is not None:
            out["pendingVerdict"] = self.pending.verdict
            out["pendingReason"] = self.pending.reason
        out.update(flow=self.flow, source=self.source, destination=self.destination, revision=self.revision,
                   stages=[asdict(s) for s in self.enforced.stages])
        if self.pending is not None:
            out["pendingStages"] = [asdict(s) for s in self.pending.stages]
        if self.notes:
            out["notes"] = self.notes
        return out

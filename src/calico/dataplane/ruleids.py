"""The identity of every verdict rule Felix renders: what its kernel counter is called and what a log says.

In: where a verdict rule sits: a policy's or a profile's rule (tier, namespace, name, rule index, action,
direction), or a drop (or accept) Felix adds itself, with its reason, stage, direction and tier. Out: a
`RuleID` and its text (`encode`), which both firewall backends put in the kernel (nft: the name of the rule's
counter object; iptables: the rule's comment) and which a packet log prefix can carry; `decode` reads it back.
Pure.

The text is at most 63 characters of `[A-Za-z0-9_./-]` starting with a letter, so it is at once a valid nft
object name, an iptables comment word and an NFLOG prefix (63 characters in both backends):

    <kind><direction><action>/<stage>/<index>/<tier>/<namespace>/<name>      (trailing empty fields dropped)

    PIA//0/default/prod/allow-web     policy prod/allow-web (tier default), ingress rule 0, Allow
    PEA//2/default//allow-dns         global policy allow-dns, egress rule 2, Allow
    REA//0///kns.prod                 profile kns.prod, egress rule 0, Allow
    TID/w//security                   workload ingress: tier security's policies applied, none decided: drop
    NED/w                             workload egress: nothing allowed the packet (profile fall-through): drop
    SED/w                             workload egress: anti-spoofing drop
    UID/w                             to a workload interface Felix does not know: fail-closed drop

A policy's or a profile's rules live in its own chain, shared by every endpoint and stage, so their identity
has no stage. When the owner's names do not fit (too long, or characters outside the set), tier, namespace and
name give way to `_` + a hash of them in the name field; `OwnerIndex` (built from the policies and profiles
Felix knows) turns it back. No Calico name starts with `_`, so a hashed owner cannot be mistaken for a name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from calico.calculation import events as ev

MAX_LEN = 63  # iptables' NFLOG prefix (64 bytes with the NUL); nft's log prefix and object names allow more
_SAFE = re.compile(r"[A-Za-z0-9.\-][A-Za-z0-9_.\-]*\Z")  # one owner field (empty is fine, checked apart)
_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9_./\-]*\Z")
HASH_MARK = "_"


class Kind(StrEnum):
    POLICY = "P"  # a policy's rule: tier, namespace (empty: global), name, index, action
    PROFILE = "R"  # a profile's rule: name, index, action
    BAD_RULE = "B"  # a policy's (tier set) or profile's (tier empty) rule that could not be rendered: drop
    TIER_DEFAULT = "T"  # a tier's policies applied and none decided: its default action (drop); tier
    NO_MATCH = "N"  # the end of an endpoint's walk: nothing allowed the packet (profile fall-through): drop
    NOT_PROGRAMMED = "M"  # a policy (tier set) or profile the endpoint names is not known yet: fail-closed drop
    UNKNOWN_IFACE = "U"  # a workload interface Felix does not know: fail-closed drop
    SPOOFED = "S"  # a workload's packet from an address (or MAC) that is not its own: drop
    INVALID = "I"  # conntrack says INVALID: drop
    TO_HOST = "H"  # workload to the host itself: DefaultEndpointToHostAction (Drop or Accept)
    FAILSAFE = "F"  # a failsafe port: accepted before any host endpoint policy


class Direction(StrEnum):
    INGRESS = "I"  # towards the endpoint (for a host endpoint: into the host, or forwarded in)
    EGRESS = "E"


class Action(StrEnum):
    ALLOW = "A"
    DENY = "D"
    PASS = "P"


class Stage(StrEnum):
    NONE = ""  # policy and profile rules: their chain serves every stage
    WORKLOAD = "w"
    HOST = "h"  # host endpoint, traffic to or from the host itself
    FORWARD = "f"  # host endpoint, forwarded traffic (applyOnForward)
    UNTRACKED = "u"  # doNotTrack
    PRE_DNAT = "p"


# What flow logs log (`calico.dataplane.config.FlowLogRules`): every verdict but conntrack's INVALID and the
# failsafe ports (host plumbing, not policy).
LOGGED = frozenset(Kind) - {Kind.INVALID, Kind.FAILSAFE}

R = TypeVar("R")


def with_twins(rules: Iterable[R], twin: Callable[[R], R | None]) -> list[R]:
    """Each rule preceded by its twin, where it has one (both backends' flow-log twins)."""
    out: list[R] = []
    for r in rules:
        t = twin(r)
        if t is not None:
            out.append(t)
        out.append(r)
    return out


# Prometheus label values and JSON spellings.
DIRECTION_NAMES = {Direction.INGRESS: "ingress", Direction.EGRESS: "egress"}
ACTION_NAMES = {Action.ALLOW: "allow", Action.DENY: "deny", Action.PASS: "pass"}
REASON_NAMES = {
    Kind.BAD_RULE: "bad_rule",
    Kind.TIER_DEFAULT: "tier_default",
    Kind.NO_MATCH: "profile_fallthrough",
    Kind.NOT_PROGRAMMED: "not_programmed",
    Kind.UNKNOWN_IFACE: "fail_closed",
    Kind.SPOOFED: "anti_spoofing",
    Kind.INVALID: "conntrack_invalid",
    Kind.TO_HOST: "endpoint_to_host",
    Kind.FAILSAFE: "failsafe",
}


@dataclass(frozen=True, slots=True)
class RuleID:
    kind: Kind
    direction: Direction
    action: Action
    stage: Stage = Stage.NONE
    index: int | None = None
    tier: str = ""
    namespace: str = ""
    name: str = ""  # policy or profile name; `_<hash>` when the owner's names were hashed

    @property
    def hashed(self) -> bool:
        """Its owner is still a hash (`OwnerIndex.resolve` did not know it)."""
        return self.name.startswith(HASH_MARK)

    @property
    def is_rule(self) -> bool:
        """A policy's or a profile's own rule (not a verdict Felix adds)."""
        return self.kind in (Kind.POLICY, Kind.PROFILE)

    @property
    def policy(self) -> str:
        """The policy as Calico users name it: `namespace/name`, or `name` for a global policy or a profile."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def text(self) -> str:
        return encode(self)


# --- building identities ------------------------------------------------------------------------------------


def direction(inbound: bool) -> Direction:
    return Direction.INGRESS if inbound else Direction.EGRESS


def rule_action(action: str) -> Action | None:
    """A Calico rule action's verdict; None for Log (it decides nothing)."""
    return {"allow": Action.ALLOW, "deny": Action.DENY, "pass": Action.PASS}.get(action.lower())


def policy_rule(pid: ev.PolicyID, inbound: bool, index: int, action: Action) -> RuleID:
    return RuleID(Kind.POLICY, direction(inbound), action, index=index, tier=pid.tier,
                  namespace=pid.namespace or "", name=pid.name)


def profile_rule(profile_id: str, inbound: bool, index: int, action: Action) -> RuleID:
    return RuleID(Kind.PROFILE, direction(inbound), action, index=index, name=profile_id)


def of_rule(owner: ev.PolicyID | str, inbound: bool, index: int, action: str) -> RuleID | None:
    """The identity of a policy's (PolicyID) or a profile's (str) rule; None for one without a verdict (Log)."""
    verdict = rule_action(action)
    if verdict is None:
        return None
    if isinstance(owner, str):
        return profile_rule(owner, inbound, index, verdict)
    return policy_rule(owner, inbound, index, verdict)


def bad_rule(owner: ev.PolicyID | str, inbound: bool, index: int) -> RuleID:
    """A rule that could not be rendered: the chain drops from there on (fail closed)."""
    tier, ns, name = _owner_fields(owner)
    return RuleID(Kind.BAD_RULE, direction(inbound), Action.DENY, index=index, tier=tier, namespace=ns, name=name)


def not_programmed(owner: ev.PolicyID | str, inbound: bool, stage: Stage) -> RuleID:
    tier, ns, name = _owner_fields(owner)
    return RuleID(Kind.NOT_PROGRAMMED, direction(inbound), Action.DENY, stage, tier=tier, namespace=ns, name=name)


def tier_default(tier: str, inbound: bool, stage: Stage) -> RuleID:
    return RuleID(Kind.TIER_DEFAULT, direction(inbound), Action.DENY, stage, tier=tier)


def verdict(kind: Kind, inbound: bool, stage: Stage, action: Action = Action.DENY) -> RuleID:
    """A verdict Felix adds that belongs to no policy: NO_MATCH, UNKNOWN_IFACE, SPOOFED, INVALID, TO_HOST,
    FAILSAFE."""
    return RuleID(kind, direction(inbound), action, stage)


def _owner_fields(owner: ev.PolicyID | str) -> tuple[str, str, str]:
    if isinstance(owner, str):
        return "", "", owner
    return owner.tier, owner.namespace or "", owner.name


# --- text ----------------------------------------------------------------------------------------------------


def owner_hash(tier: str, namespace: str, name: str) -> str:
    return HASH_MARK + hashlib.blake2b(f"{tier}\0{namespace}\0{name}".encode(), digest_size=8).hexdigest()


def _fields(rid: RuleID, tier: str, namespace: str, name: str) -> str:
    parts = [f"{rid.kind}{rid.direction}{rid.action}", str(rid.stage),
             "" if rid.index is None else str(rid.index), tier, namespace, name]
    while parts and not parts[-1]:
        parts.pop()
    return "/".join(parts)


def encode(rid: RuleID) -> str:
    """The identity as text (see the module docstring); the owner is hashed when it does not fit."""
    owner = (rid.tier, rid.namespace, rid.name)
    if all(not f or _SAFE.match(f) for f in owner):
        text = _fields(rid, *owner)
        if len(text) <= MAX_LEN:
            return text
    return _fields(rid, "", "", owner_hash(*owner))


def decode(text: str) -> RuleID:
    """`encode`'s inverse (a hashed owner stays hashed: see `OwnerIndex`); ValueError for anything else."""
    if len(text) > MAX_LEN or not _TEXT.match(text):
        raise ValueError(f"not a rule identity: {text!r}")
    head, *rest = text.split("/")
    rest += [""] * (5 - len(rest))
    if len(head) != 3 or len(rest) != 5:
        raise ValueError(f"not a rule identity: {text!r}")
    stage, index, tier, namespace, name = rest
    try:
        rid = RuleID(Kind(head[0]), Direction(head[1]), Action(head[2]), Stage(stage),
                     int(index) if index else None, tier, namespace, name)
    except ValueError:
        raise ValueError(f"not a rule identity: {text!r}") from None
    if encode(rid) != text and not rid.hashed:
        raise ValueError(f"not a rule identity (not in canonical form): {text!r}")
    return rid


class OwnerIndex:
    """Hashed owners back to their names, for the policies and profiles Felix knows (pure, rebuilt at will)."""

    def __init__(self, policies: Iterable[ev.PolicyID] = (), profiles: Iterable[str] = (),
                 tiers: Iterable[str] = ()) -> None:
        self._by_hash: dict[str, tuple[str, str, str]] = {}
        for pid in policies:
            self.add(pid.tier, pid.namespace or "", pid.name)
            self.add(pid.tier, "", "")  # a tier's own drops hash the tier alone
        for prof in profiles:
            self.add("", "", prof)
        for tier in tiers:
            self.add(tier, "", "")

    def add(self, tier: str, namespace: str, name: str) -> None:
        self._by_hash[owner_hash(tier, namespace, name)] = (tier, namespace, name)

    def resolve(self, rid: RuleID) -> RuleID:
        if not rid.hashed:
            return rid
        found = self._by_hash.get(rid.name)
        return rid if found is None else replace(rid, tier=found[0], namespace=found[1], name=found[2])

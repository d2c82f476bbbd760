"""Active rules: which policies and profiles this host needs, and their rendered rules.

Enters:
  - every policy's and profile's rules (`update_policy` / `update_profile`), active or not;
  - reference counts from the `PolicyResolver` (`ref_policy` / `unref_policy`: a local endpoint has the
    policy in one of its tier lists; `ref_profile` / `unref_profile`: a local endpoint lists the profile).
Leaves (`flush`): for each policy/profile that became active, changed while active, or became inactive,
a `PolicyUpdate` / `ProfileUpdate` (rendered by its `RuleRenderer`, the rule scanner) or a remove, to its
`RulesSink` (the sequencer); and the IP sets those renderings use, acquired before the old rendering's sets
are released (so a set shared by the old and the new rendering is never removed and re-created).

A policy or profile nobody on this host uses is never rendered, and its sets never exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from calico.calculation.events import PolicyID, PolicyUpdate, ProfileUpdate
from calico.calculation.types import IPSetSpec, PolicyRules, ProfileRules

__all__ = ["ActiveRules", "RuleRenderer", "RulesSink"]


class RuleRenderer(Protocol):
    """Renders what became active and holds the IP sets renderings use (`rule_scanner.RuleScanner`)."""

    def render_policy(self, pid: PolicyID, rules: PolicyRules) -> tuple[PolicyUpdate, frozenset[IPSetSpec]]: ...

    def render_profile(self, name: str, rules: ProfileRules | None) -> tuple[ProfileUpdate, frozenset[IPSetSpec]]: ...

    def acquire(self, specs: Iterable[IPSetSpec]) -> None: ...

    def release(self, specs: Iterable[IPSetSpec]) -> None: ...


class RulesSink(Protocol):
    """Where rendered policies and profiles go, None meaning removed (`sequencer.Sequencer`)."""

    def policy(self, pid: PolicyID, update: PolicyUpdate | None) -> None: ...

    def profile(self, name: str, update: ProfileUpdate | None) -> None: ...


class ActiveRules:
    """See the module docstring."""

    def __init__(self, renderer: RuleRenderer, sink: RulesSink) -> None:
        self._renderer = renderer
        self._sink = sink
        self._policies: dict[PolicyID, PolicyRules] = {}
        self._profiles: dict[str, ProfileRules] = {}
        self._policy_refs: dict[PolicyID, int] = {}
        self._profile_refs: dict[str, int] = {}
        # The sets each active rendering holds.
        self._policy_sets: dict[PolicyID, frozenset[IPSetSpec]] = {}
        self._profile_sets: dict[str, frozenset[IPSetSpec]] = {}
        self._dirty_policies: set[PolicyID] = set()
        self._dirty_profiles: set[str] = set()
        # Last rendering of each policy, reused when it becomes active again with the same rules.
        self._rendered: dict[PolicyID, tuple[PolicyRules, PolicyUpdate, frozenset[IPSetSpec]]] = {}

    # ---- inputs ------------------------------------------------------------------------------

    def update_policy(self, pid: PolicyID, rules: PolicyRules | None) -> None:
        if rules is None:
            self._rendered.pop(pid, None)
            if self._policies.pop(pid, None) is not None:
                self._dirty_policies.add(pid)
            return
        if self._policies.get(pid) == rules:
            return
        self._rendered.pop(pid, None)
        self._policies[pid] = rules
        if pid in self._policy_refs:
            self._dirty_policies.add(pid)

    def update_profile(self, name: str, rules: ProfileRules | None) -> None:
        if self._profiles.get(name) == rules:
            return
        if rules is None:
            del self._profiles[name]
        else:
            self._profiles[name] = rules
        if name in self._profile_refs:
            self._dirty_profiles.add(name)

    def ref_policy(self, pid: PolicyID) -> None:
        count = self._policy_refs.get(pid, 0)
        self._policy_refs[pid] = count + 1
        if count == 0:
            self._dirty_policies.add(pid)

    def unref_policy(self, pid: PolicyID) -> None:
        count = self._policy_refs[pid]
        if count == 1:
            del self._policy_refs[pid]
            self._dirty_policies.add(pid)
        else:
            self._policy_refs[pid] = count - 1

    def ref_profile(self, name: str) -> None:
        count = self._profile_refs.get(name, 0)
        self._profile_refs[name] = count + 1
        if count == 0:
            self._dirty_profiles.add(name)

    def unref_profile(self, name: str) -> None:
        count = self._profile_refs[name]
        if count == 1:
            del self._profile_refs[name]
            self._dirty_profiles.add(name)
        else:
            self._profile_refs[name] = count - 1

    # ---- output ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Render what became active or changed while active; tell the sink; move IP set references."""
        renderer, sink = self._renderer, self._sink
        dirty_policies, self._dirty_policies = self._dirty_policies, set()
        for pid in dirty_policies:
            old_sets = self._policy_sets.pop(pid, frozenset())
            rules = self._policies.get(pid)
            if pid in self._policy_refs and rules is not None:
                cached = self._rendered.get(pid)
                if cached is not None and cached[0] is rules:
                    update, sets = cached[1], cached[2]
                else:
                    update, sets = renderer.render_policy(pid, rules)
                    self._rendered[pid] = (rules, update, sets)
                renderer.acquire(sets)
                self._policy_sets[pid] = sets
                sink.policy(pid, update)
            else:
                sink.policy(pid, None)
            renderer.release(old_sets)
        dirty_profiles, self._dirty_profiles = self._dirty_profiles, set()
        for name in dirty_profiles:
            old_sets = self._profile_sets.pop(name, frozenset())
            if name in self._profile_refs:
                profile_update, sets = renderer.render_profile(name, self._profiles.get(name))
                renderer.acquire(sets)
                self._profile_sets[name] = sets
                sink.profile(name, profile_update)
            else:
                sink.profile(name, None)
            renderer.release(old_sets)

    # ---- queries -----------------------------------------------------------------------------

    def active_policies(self) -> frozenset[PolicyID]:
        return frozenset(self._policy_refs)

    def active_profiles(self) -> frozenset[str]:
        return frozenset(self._profile_refs)

    def policy_rules(self, pid: PolicyID) -> PolicyRules | None:
        """The policy's rules as written (what its rendering came from)."""
        return self._policies.get(pid)

    def profile_rules(self, name: str) -> ProfileRules | None:
        return self._profiles.get(name)

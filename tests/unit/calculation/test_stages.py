"""Single stages against recording fakes of the interfaces they feed (the whole graph is tested in
test_graph.py over the same paths with the real stages)."""

from __future__ import annotations

from collections.abc import Iterable

from calico.calculation.active_rules import ActiveRules
from calico.calculation.events import (
    IPSetType,
    PolicyID,
    PolicyUpdate,
    ProfileUpdate,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.calculation.policy_resolver import PolicyMeta, PolicyResolver
from calico.calculation.types import EndpointEvent, EndpointKey, IPSetSpec, LocalWorkload, PolicyRules, ProfileRules
from calico.selector import parse

PID = PolicyID("default", "p1")


class FakeRenderer:
    """A RuleRenderer that gives each distinct rules value one set, and logs what it is asked."""

    def __init__(self) -> None:
        self.log: list[tuple[str, object]] = []

    def render_policy(self, pid: PolicyID, rules: PolicyRules) -> tuple[PolicyUpdate, frozenset[IPSetSpec]]:
        self.log.append(("render", pid))
        spec = IPSetSpec(f"n{len(rules.ingress)}", IPSetType.NET, nets=frozenset({"198.18.0.0/24"}))
        return PolicyUpdate(pid, (), ()), frozenset({spec})

    def render_profile(self, name: str, rules: ProfileRules | None) -> tuple[ProfileUpdate, frozenset[IPSetSpec]]:
        self.log.append(("render", name))
        return ProfileUpdate(name, (), ()), frozenset()

    def acquire(self, specs: Iterable[IPSetSpec]) -> None:
        self.log.extend(("acquire", s.set_id) for s in specs)

    def release(self, specs: Iterable[IPSetSpec]) -> None:
        self.log.extend(("release", s.set_id) for s in specs)


class FakeSink:
    """Records what a sequencer would be told."""

    def __init__(self) -> None:
        self.policies: dict[PolicyID, PolicyUpdate | None] = {}
        self.profiles: dict[str, ProfileUpdate | None] = {}
        self.endpoints: dict[EndpointKey, EndpointEvent] = {}

    def policy(self, pid: PolicyID, update: PolicyUpdate | None) -> None:
        self.policies[pid] = update

    def profile(self, name: str, update: ProfileUpdate | None) -> None:
        self.profiles[name] = update

    def endpoint(self, key: EndpointKey, event: EndpointEvent) -> None:
        self.endpoints[key] = event


class FakeRefs:
    def __init__(self) -> None:
        self.policies: dict[PolicyID, int] = {}
        self.profiles: dict[str, int] = {}

    def ref_policy(self, pid: PolicyID) -> None:
        self.policies[pid] = self.policies.get(pid, 0) + 1

    def unref_policy(self, pid: PolicyID) -> None:
        self.policies[pid] -= 1

    def ref_profile(self, name: str) -> None:
        self.profiles[name] = self.profiles.get(name, 0) + 1

    def unref_profile(self, name: str) -> None:
        self.profiles[name] -= 1


def _rules(n_ingress: int) -> PolicyRules:
    return PolicyRules(None, tuple(object() for _ in range(n_ingress)), (), inbound=True, outbound=False)  # type: ignore[misc]


def test_active_rules_renders_only_what_is_referenced_and_moves_sets_safely() -> None:
    renderer, sink = FakeRenderer(), FakeSink()
    active = ActiveRules(renderer, sink)
    active.update_policy(PID, _rules(1))
    active.flush()
    assert renderer.log == [] and sink.policies == {}  # nobody uses it: never rendered

    active.ref_policy(PID)
    active.flush()
    assert renderer.log == [("render", PID), ("acquire", "n1")]
    assert sink.policies[PID] == PolicyUpdate(PID, (), ())

    renderer.log.clear()
    active.update_policy(PID, _rules(2))
    active.flush()
    # The new rendering's sets are held before the old one's are let go.
    assert renderer.log == [("render", PID), ("acquire", "n2"), ("release", "n1")]

    renderer.log.clear()
    active.unref_policy(PID)
    active.flush()
    assert renderer.log == [("release", "n2")]
    assert sink.policies[PID] is None


def test_resolver_feeds_refs_and_endpoint_events() -> None:
    refs, sink = FakeRefs(), FakeSink()
    resolver = PolicyResolver(refs, sink)
    wid = WorkloadEndpointID("ns", "w1")
    info = LocalWorkload("cali1", None, ("198.18.0.1/32",), (), ("prof",), ())
    resolver.update_policy(PID, PolicyMeta(order=None, ingress=True, egress=False), parse('app == "a"'))
    resolver.update_endpoint(wid, info, {"app": "a"}, ())
    resolver.flush()
    assert refs.policies == {PID: 1} and refs.profiles == {"prof": 1}
    event = sink.endpoints[wid]
    assert isinstance(event, WorkloadEndpointUpdate)
    assert [t.ingress_policies for t in event.tiers] == [(PID,)]

    resolver.remove_endpoint(wid)
    resolver.flush()
    assert refs.policies == {PID: 0} and refs.profiles == {"prof": 0}
    assert sink.endpoints[wid] == WorkloadEndpointRemove(wid)

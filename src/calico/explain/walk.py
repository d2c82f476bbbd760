"""Walk one flow through the stages it crosses, in the dataplane's own order, recording every decision.

Enters: a `World`, a `Flow` and the resolved source and destination (`Endpoint`, or None for a bare
address). Leaves: a `Verdict` with one `StageTrace` per stage: the source's egress (a workload: anti-spoofing,
then its tiers and profiles; a host endpoint: traffic leaving the host through it), then the destination's
ingress. The first stage that denies ends the flow. Pure.

The order of tiers, policies and profiles, Pass, tier defaults and the fail-closed drops are the steps of
`dataplane.tiers.endpoint_steps`, the walk both firewall renderers spell; rule matching is `match.py`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.calculation import events as ev
from calico.dataplane.config import DataplaneConfig, FailsafePort
from calico.dataplane.hostendpoints import HEP_ROLES
from calico.dataplane.tiers import Policed, Step, StepKind, endpoint_steps
from calico.explain.flow import Flow, PartyKind
from calico.explain.match import mismatches
from calico.explain.trace import PolicyTrace, RuleTrace, StageTrace, TierTrace, Verdict
from calico.explain.world import Endpoint, World
from calico.resources import Rule

_FAILSAFES = DataplaneConfig()  # Felix's default failsafe ports (a host's FelixConfiguration may change them)


def explain_flow(world: World, flow: Flow, src: Endpoint | None, dst: Endpoint | None) -> Verdict:
    stages: list[StageTrace] = []
    for end, inbound in ((src, False), (dst, True)):
        if end is None:
            continue
        stage = _stage(world, flow, end, inbound)
        stages.append(stage)
        if stage.verdict != "allow":
            return Verdict(stages, "deny", f"{stage.stage} of {stage.endpoint}: {stage.reason}")
    if not stages:
        return Verdict(stages, "allow", "neither end is a Calico endpoint: no Calico policy applies")
    return Verdict(stages, "allow", "; ".join(f"{s.stage} of {s.endpoint}: {s.reason}" for s in stages))


def _stage(world: World, flow: Flow, end: Endpoint, inbound: bool) -> StageTrace:
    stage = StageTrace("ingress" if inbound else "egress", end.label, end.node)
    if end.kind is PartyKind.WORKLOAD:
        wep = world.workload(end.key)
        if wep is None:
            return _deny(stage, "the endpoint is not valid for Felix: its interface is unknown, dropped (fail closed)",
                         "fail_closed")
        if not inbound and not _own_source(wep, flow.src_ip):
            return _deny(stage, f"anti-spoofing: {flow.src_ip} is not one of the endpoint's addresses or "
                                "allowSpoofedSourcePrefixes", "anti_spoofing")
        if not inbound:
            stage.checks.append(f"anti-spoofing: {flow.src_ip} is the endpoint's own")
        policed: Policed | ev.WorkloadEndpointUpdate = wep
        tiers = wep.tiers
    else:
        hep = world.host_endpoint(end.key)
        if hep is None:
            return _deny(stage, "the host endpoint is not valid for Felix", "fail_closed")
        if (port := _failsafe(flow, inbound)) is not None:
            stage.checks.append(f"failsafe {port.protocol}:{port.port} ({'inbound' if inbound else 'outbound'})")
            stage.verdict, stage.reason = "allow", "a failsafe port: allowed before any policy"
            stage.decided = "failsafe"
            return stage
        role = next(r for r in HEP_ROLES if r.inbound == inbound and not r.forward)
        policed = role.policed(hep)
        tiers = hep.tiers
    steps = endpoint_steps(policed, inbound, world.state.policies, world.state.profiles)
    return _walk(world, flow, stage, steps, {t.name: t for t in tiers}, inbound)


def _walk(world: World, flow: Flow, stage: StageTrace, steps: list[Step], tiers: dict[str, ev.TierInfo],
          inbound: bool) -> StageTrace:
    passed = False
    tier: TierTrace | None = None
    for step in steps:
        kind = step.kind
        if kind is StepKind.NEXT_TIER:
            passed = False
        elif kind in (StepKind.POLICY, StepKind.MISSING_POLICY):
            pid = step.target
            assert isinstance(pid, ev.PolicyID)
            if tier is None or tier.name != pid.tier:
                info = tiers.get(pid.tier)
                tier = TierTrace(pid.tier, info.default_action if info else "Deny")
                stage.tiers.append(tier)
            name = f"{pid.namespace}/{pid.name}" if pid.namespace else pid.name
            ident = {"tier": pid.tier, "namespace": pid.namespace, "resource": pid.name}
            if passed:
                tier.policies.append(PolicyTrace("policy", name, "skipped", **ident))
                continue
            if kind is StepKind.MISSING_POLICY:
                tier.policies.append(PolicyTrace("policy", name, "missing", **ident))
                tier.outcome = "deny"
                return _deny(stage, f"policy {name} is not known to Felix yet: dropped (fail closed)", "not_programmed")
            update = world.state.policies[pid]
            trace = _evaluate("policy", name, update.inbound if inbound else update.outbound,
                              world.rule_sources(pid, inbound), flow, world, profile=False)
            trace.tier, trace.namespace, trace.resource = pid.tier, pid.namespace, pid.name
            tier.policies.append(trace)
            if trace.outcome in ("allow", "deny"):
                tier.outcome = trace.outcome
                return _decided(stage, trace, f"tier {tier.name}")
            if trace.outcome == "pass":
                tier.outcome = "pass"
                passed = True
        elif kind is StepKind.TIER_DROP:
            if not passed and tier is not None:
                tier.outcome = "end-deny"
                return _deny(stage, f"tier {tier.name}: policies applied but none decided; the tier's default "
                                    "action is Deny", "tier_default")
        elif kind in (StepKind.PROFILE, StepKind.MISSING_PROFILE):
            _end_tiers(stage)
            name = str(step.target)
            if kind is StepKind.MISSING_PROFILE:
                stage.profiles.append(PolicyTrace("profile", name, "missing", resource=name))
                return _deny(stage, f"profile {name} is not known to Felix: dropped (fail closed)", "not_programmed")
            update = world.state.profiles[name]
            trace = _evaluate("profile", name, update.inbound if inbound else update.outbound,
                              world.rule_sources(name, inbound), flow, world, profile=True)
            trace.resource = name
            stage.profiles.append(trace)
            if trace.outcome in ("allow", "deny"):
                return _decided(stage, trace, "")
        elif kind is StepKind.DROP:
            _end_tiers(stage)
            if not stage.tiers and not stage.profiles:
                return _deny(stage, "no policy and no profile applies: default drop", "profile_fallthrough")
            return _deny(stage, "nothing allowed it: default drop at the end of the profiles", "profile_fallthrough")
    return _deny(stage, "end of the walk", "profile_fallthrough")  # endpoint_steps always ends in DROP


def _end_tiers(stage: StageTrace) -> None:
    for t in stage.tiers:
        if t.outcome == "no-match" and t.default_action.lower() == "pass":
            t.outcome = "end-pass"


def _evaluate(kind: str, name: str, rules: tuple[ev.RenderedRule, ...], sources: dict[str, tuple[int, Rule]],
              flow: Flow, world: World, profile: bool) -> PolicyTrace:
    trace = PolicyTrace(kind, name, "no-match")
    for rule in rules:
        index, written = sources.get(rule.rule_id, (None, None))
        why = mismatches(flow, rule, world)
        trace.rules.append(RuleTrace(index, rule.action, not why, why, _shown(written)))
        if why:
            continue
        action = rule.action.lower()
        if action == "log":
            continue  # logged, and the walk goes on
        trace.decided_by = len(trace.rules) - 1
        if action == "pass" and profile:
            break  # no tier follows a profile: Pass only ends this profile
        trace.outcome = action
        break
    return trace


def _shown(rule: Rule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    data = rule.model_dump(mode="json", exclude_none=True)
    return {k: v for k, v in data.items() if v not in ({}, [], None)}


def _decided(stage: StageTrace, trace: PolicyTrace, where: str) -> StageTrace:
    assert trace.decided_by is not None
    rule = trace.rules[trace.decided_by]
    index = "a rule Felix added (fail closed)" if rule.index is None else f"rule {rule.index}"
    stage.verdict, stage.decided = trace.outcome, "rule"
    where = f"{where}, " if where else ""
    stage.reason = f"{'allowed' if trace.outcome == 'allow' else 'denied'} by {where}{trace.kind} {trace.name} {index}"
    return stage


def _deny(stage: StageTrace, reason: str, decided: str) -> StageTrace:
    stage.verdict, stage.reason, stage.decided = "deny", reason, decided
    return stage


def _own_source(wep: ev.WorkloadEndpointUpdate, src_ip: str) -> bool:
    addr = ipaddress.ip_address(src_ip)
    nets = (*wep.ipv4_nets, *wep.ipv6_nets, *wep.allow_spoofed_source_prefixes)
    return any(addr in ipaddress.ip_network(n, strict=False) for n in nets
               if ipaddress.ip_network(n, strict=False).version == addr.version)


def _failsafe(flow: Flow, inbound: bool) -> FailsafePort | None:
    proto = flow.port_protocol
    if proto is None or flow.dst_port is None:
        return None
    peer = ipaddress.ip_address(flow.src_ip if inbound else flow.dst_ip)
    for p in _FAILSAFES.failsafe_inbound if inbound else _FAILSAFES.failsafe_outbound:
        if p.protocol == proto and p.port == flow.dst_port and (
                p.net is None or peer in ipaddress.ip_network(p.net, strict=False)):
            return p
    return None

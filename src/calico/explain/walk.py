"""Walk one flow through the stages it crosses, in the dataplane's own order, recording every decision.

Enters: a `World`, a `Flow`, the stages it crosses (`path.hops`) and, when a DNAT rewrote its destination,
the flow as it arrived (what the untracked and preDNAT stages see). Leaves: a `Verdict` with one `StageTrace`
per stage: a workload's egress (anti-spoofing, then its tiers and profiles) or ingress; a host endpoint's
untracked (doNotTrack) and preDNAT stages, its normal policy for traffic to or from the host, its
applyOnForward policy for forwarded traffic. The first stage that denies ends the flow. Pure.

Host endpoint stages, as the renderers build them (`calico.dataplane.hostendpoints`): an untracked or preDNAT
stage tries failsafe ports first (accepted there, the packet goes on, tracked), then its tiers; Allow accepts
and makes every later host endpoint stage skip the packet (untracked: also not tracked), Deny drops, nothing
decided goes on. Forwarded traffic with no applyOnForward policy in its direction is left alone; otherwise
those tiers decide, and nothing allowed it drops. Workload stages run whatever the host endpoint stages did.

The order of tiers, policies and profiles, Pass, tier defaults and the fail-closed drops are the steps of
`dataplane.tiers.endpoint_steps` (`stage_steps` for the untracked and preDNAT stages), the walk both firewall
renderers spell; rule matching is `match.py`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from calico.calculation import events as ev
from calico.dataplane import tohost
from calico.dataplane.config import DataplaneConfig, FailsafePort
from calico.dataplane.hostendpoints import HEP_ROLES
from calico.dataplane.tiers import Step, StepKind, endpoint_steps, has_direction, stage_steps
from calico.explain.flow import Flow, PartyKind
from calico.explain.match import mismatches
from calico.explain.path import Hop, HopKind, hops
from calico.explain.trace import PolicyTrace, RuleTrace, StageTrace, TierTrace, Verdict
from calico.explain.world import Endpoint, World
from calico.resources import Rule

_FAILSAFES = DataplaneConfig()  # Felix's default failsafe ports (a host's FelixConfiguration may change them)


def explain_flow(world: World, flow: Flow, src: Endpoint | None, dst: Endpoint | None,
                 via: Endpoint | None = None, leaves: Endpoint | None = None,
                 arrived: Flow | None = None) -> Verdict:
    stages: list[StageTrace] = []
    allowed_by: str | None = None  # the untracked / preDNAT stage whose Allow later host endpoint stages skip
    path = hops(src, dst, via, leaves)
    if path[-1].kind is HopKind.TO_HOST and (why := _to_host_first(flow)) is not None:
        stage = StageTrace("ingress", path[-1].end.label, path[-1].end.node, kind=HopKind.TO_HOST.value)
        stage.verdict, stage.decided = "allow", "to_host"
        stage.reason = f"{why}: a workload's traffic to its host accepted before its egress policy"
        return Verdict([stage], "allow", f"{_title(stage)}: {stage.reason}")
    for hop in path:
        before_nat = arrived is not None and hop.kind in (HopKind.UNTRACKED, HopKind.PRE_DNAT)
        stage = _stage(world, arrived if before_nat and arrived else flow, hop, allowed_by)
        if stage is None:
            continue
        stages.append(stage)
        if stage.verdict == "deny":
            return Verdict(stages, "deny", f"{_title(stage)}: {stage.reason}")
        if stage.verdict == "allow" and hop.kind in (HopKind.UNTRACKED, HopKind.PRE_DNAT) and allowed_by is None:
            allowed_by = _title(stage)
    if not stages:
        return Verdict(stages, "allow", "neither end is a Calico endpoint: no Calico policy applies")
    decided = [s for s in stages if s.verdict == "allow" and s.decided != "hep_allowed"]
    if not decided:
        return Verdict(stages, "allow", "no stage decided: nothing Calico renders drops the flow")
    return Verdict(stages, "allow", "; ".join(f"{_title(s)}: {s.reason}" for s in decided))


def _title(stage: StageTrace) -> str:
    kind = "" if stage.kind == "normal" else f"{stage.kind} "
    return f"{kind}{stage.stage} of {stage.endpoint}"


def _stage(world: World, flow: Flow, hop: Hop, allowed_by: str | None) -> StageTrace | None:
    """The hop's trace; None for a host endpoint stage that has no policy in this direction (no chain)."""
    end, inbound = hop.end, hop.inbound
    stage = StageTrace("ingress" if inbound else "egress", end.label, end.node, kind=hop.kind.value)
    if hop.kind is HopKind.FROM_HOST:
        stage.verdict, stage.decided = "allow", "from_host"
        stage.reason = "the host's own traffic to its workloads is accepted (output chain): no policy applies"
        return stage
    if hop.kind is HopKind.TO_HOST:
        return _to_host(world, stage, end.node)
    if end.kind is PartyKind.WORKLOAD:
        return _workload(world, flow, stage, end, inbound)
    hep = world.host_endpoint(end.key)
    if hep is None:
        if hop.kind in (HopKind.UNTRACKED, HopKind.PRE_DNAT):
            return None  # reported once, by its normal or forward stage
        return _deny(stage, "the host endpoint is not valid for Felix", "fail_closed")
    if hop.kind in (HopKind.UNTRACKED, HopKind.PRE_DNAT):
        tiers = hep.untracked_tiers if hop.kind is HopKind.UNTRACKED else hep.pre_dnat_tiers
        if not has_direction(tiers, inbound):
            return None
        if allowed_by is not None:  # preDNAT after an untracked Allow
            return _skipped(stage, allowed_by)
        if (port := _failsafe(flow, inbound)) is not None:
            stage.checks.append(f"failsafe {port.protocol}:{port.port}: accepted here, tracked; the later "
                                "stages decide")
            stage.verdict, stage.reason = "none", "a failsafe port: this stage's policy is not tried"
            return stage
        steps = stage_steps(tiers, inbound, world.state.policies)
        return _walk(world, flow, stage, steps, {t.name: t for t in tiers}, inbound)
    role = next(r for r in HEP_ROLES if r.inbound == inbound and r.forward == (hop.kind is HopKind.FORWARD))
    if allowed_by is not None:
        return _skipped(stage, allowed_by)
    if role.left_alone(hep):
        stage.verdict = "allow"
        stage.reason = "no applyOnForward policy applies in this direction: forwarded traffic is left alone"
        return stage
    if not role.forward and (port := _failsafe(flow, inbound)) is not None:
        stage.checks.append(f"failsafe {port.protocol}:{port.port} ({'inbound' if inbound else 'outbound'})")
        stage.verdict, stage.reason = "allow", "a failsafe port: allowed before any policy"
        stage.decided = "failsafe"
        return stage
    tiers = hep.forward_tiers if role.forward else hep.tiers
    steps = endpoint_steps(role.policed(hep), inbound, world.state.policies, world.state.profiles)
    return _walk(world, flow, stage, steps, {t.name: t for t in tiers}, inbound)


def _workload(world: World, flow: Flow, stage: StageTrace, end: Endpoint, inbound: bool) -> StageTrace:
    wep = world.workload(end.key)
    if wep is None:
        return _deny(stage, "the endpoint is not valid for Felix: its interface is unknown, dropped (fail closed)",
                     "fail_closed")
    if not inbound and not _own_source(wep, flow.src_ip):
        return _deny(stage, f"anti-spoofing: {flow.src_ip} is not one of the endpoint's addresses or "
                            "allowSpoofedSourcePrefixes", "anti_spoofing")
    if not inbound:
        stage.checks.append(f"anti-spoofing: {flow.src_ip} is the endpoint's own")
    steps = endpoint_steps(wep, inbound, world.state.policies, world.state.profiles)
    return _walk(world, flow, stage, steps, {t.name: t for t in wep.tiers}, inbound)


def _to_host_first(flow: Flow) -> str | None:
    proto = flow.port_protocol or ("icmpv6" if flow.is_icmp and flow.version == 6 else None)
    return tohost.accepted_first(proto, flow.dst_port, flow.version, flow.icmp_type)


def _to_host(world: World, stage: StageTrace, node: str | None) -> StageTrace:
    setting = world.endpoint_to_host_action(node)
    verdict = tohost.action(setting)
    stage.checks.append(f"DefaultEndpointToHostAction on {node or 'this node'}: {setting}")
    if verdict == "drop":
        return _deny(stage, f"a workload's traffic to its own host: DefaultEndpointToHostAction {setting}",
                     "endpoint_to_host")
    stage.verdict, stage.decided = "allow", "to_host"
    stage.reason = (f"DefaultEndpointToHostAction {setting}" if verdict == "accept" else
                    f"DefaultEndpointToHostAction {setting}: host endpoint policy would decide, and none is "
                    "bound to a workload's interface")
    return stage


def _skipped(stage: StageTrace, allowed_by: str) -> StageTrace:
    stage.verdict, stage.decided = "allow", "hep_allowed"
    stage.reason = f"skipped: already allowed by the {allowed_by}"
    return stage


def _walk(world: World, flow: Flow, stage: StageTrace, steps: list[Step], tiers: dict[str, ev.TierInfo],
          inbound: bool) -> StageTrace:
    passed = False
    tier: TierTrace | None = None
    for step in steps:
        kind = step.kind
        if kind in (StepKind.NEXT_TIER, StepKind.STAGE_TIER):
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
            if stage.kind == "forward":
                return _deny(stage, "applyOnForward policies applied but none allowed it: dropped",
                             "profile_fallthrough")
            return _deny(stage, "nothing allowed it: default drop at the end of the profiles", "profile_fallthrough")
        elif kind is StepKind.RETURN:  # an untracked / preDNAT stage: its tiers have no default action
            stage.verdict, stage.reason = "none", "no rule decided: the packet goes on to the next stage"
            return stage
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

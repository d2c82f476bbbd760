"""Rule scanner: the Calico rules of active policies and profiles in; `RenderedRule`s and IP sets out.

Enters (from `ActiveRules`): a policy's or profile's rules (`PolicyRules` / `ProfileRules`) when it
becomes active or changes while active; `acquire` / `release` of the IP sets a rendering uses.
Leaves: `PolicyUpdate` / `ProfileUpdate` values whose selectors are resolved to IP set ids, and, through
reference counting, `add_set` / `remove_set` to its `SetSink` (IP set members) the first time a set is used
and after its last user goes. One set per distinct thing, shared by every rule that needs it:
  - a selector set (NET type) per distinct positive selector or notSelector, id "s…" from the canonical
    selector text, which already carries namespace scoping (see `selectors.py`);
  - a named-port set (IP_PORT) per (protocol, port name, positive selector or all()), id "p…";
  - a nets set (NET) for a `nets` / `notNets` list longer than `INLINE_NETS_MAX` (8), id "n…"; shorter
    lists stay inline in the rule (`src_nets`, ...), which every dataplane matches without a set.
Ids are 20 characters, `[a-z2-7]` after a type letter: stable across restarts and hosts, and short enough
for `cali40`-style ipset names and nftables identifiers.

Field mapping: ports become inclusive (min, max) ranges, named ports become named-port set ids (ORed
with numeric ports, as Calico does); `notSelector` is *not* namespace-scoped (as in Calico: it excludes
matching endpoints wherever they are) and matches by absence from its set, so non-Calico peers match it;
protocol keeps Calico's spelling; `ipVersion` is explicit or implied (ICMP / CIDRs). `rule_id` is a
16-character hash of owner, direction, position and rule content.

Fail closed. A rule this dataplane cannot enforce (an `http` match, which needs an application-layer
engine; a `services` match, which needs Service endpoints the graph does not follow; a selector whose
scoped form is too big) is never rendered as written: an Allow or Log rule is left out (so it allows
nothing), a Deny or Pass rule becomes a Deny limited only by its ipVersion/protocol (so it drops at least
what it could have matched). A policy whose stored value went bad (`broken`) is rendered as one Deny per
direction it applies in.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Protocol

from calico.calculation.events import IPSetType, PolicyID, PolicyUpdate, ProfileUpdate, RenderedRule
from calico.calculation.selectors import ALL, parse_cached, rule_selector
from calico.calculation.types import IPSetSpec, PolicyRules, ProfileRules, port_protocol
from calico.resources import EntityRule, Rule
from calico.selector import Selector, SelectorError

log = logging.getLogger(__name__)

__all__ = [
    "INLINE_NETS_MAX",
    "RuleScanner",
    "SetSink",
    "named_port_set",
    "nets_set",
    "policy_owner",
    "profile_owner",
    "render_rules",
    "rendered_rule_id",
    "selector_set",
]

INLINE_NETS_MAX = 8


class SetSink(Protocol):
    """What the scanner feeds: the IP sets active rules need (`ipset_members.IPSetMembers`)."""

    def add_set(self, spec: IPSetSpec) -> None: ...

    def remove_set(self, set_id: str) -> None: ...


class Unrenderable(Exception):
    """A rule the dataplane cannot enforce as written."""


# ---- set identities --------------------------------------------------------------------------------


def _digest(text: str, length: int) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode().lower()[:length]


@lru_cache(maxsize=16384)
def selector_set(selector: Selector) -> IPSetSpec:
    return IPSetSpec("s" + _digest(f"sel\0{selector}", 19), IPSetType.NET, selector=selector)


@lru_cache(maxsize=16384)
def named_port_set(selector: Selector, protocol: str, name: str) -> IPSetSpec:
    sid = "p" + _digest(f"np\0{protocol}\0{name}\0{selector}", 19)
    return IPSetSpec(sid, IPSetType.IP_PORT, selector=selector, named_port=(protocol, name))


def nets_set(nets: Iterable[str]) -> IPSetSpec:
    members = frozenset(nets)
    return IPSetSpec("n" + _digest("net\0" + ",".join(sorted(members)), 19), IPSetType.NET, nets=members)


# ---- rendering -------------------------------------------------------------------------------------


def render_rules(
    owner: str, direction: str, rules: Sequence[Rule], namespace: str | None
) -> tuple[tuple[RenderedRule, ...], frozenset[IPSetSpec]]:
    """Render one direction's rules of one policy or profile (`owner` names it, for rule ids and logs)."""
    out: list[RenderedRule] = []
    specs: set[IPSetSpec] = set()
    for index, rule in enumerate(rules):
        rule_id = rendered_rule_id(owner, direction, index, rule)
        used: set[IPSetSpec] = set()
        try:
            rendered = _render_rule(rule, namespace, rule_id, used)
        except (Unrenderable, SelectorError) as exc:
            log.warning("%s %s rule %d cannot be enforced (%s); failing closed", owner, direction, index, exc)
            if rule.action in ("Deny", "Pass"):
                out.append(
                    RenderedRule(
                        action="Deny",
                        rule_id=rule_id,
                        ip_version=rule.ip_version(),
                        protocol=rule.protocol,
                        not_protocol=rule.notProtocol,
                    )
                )
            continue
        specs |= used
        out.append(rendered)
    return tuple(out), frozenset(specs)


def rendered_rule_id(owner: str, direction: str, index: int, rule: Rule) -> str:
    """The `rule_id` of the rendering of `rule`, the `index`th of `owner`'s rules in `direction`."""
    return _digest(f"{owner}\0{direction}\0{index}\0{rule.model_dump_json(exclude_none=True)}", 16)


def policy_owner(pid: PolicyID) -> str:
    return f"policy:{pid.tier}/{pid.namespace or ''}/{pid.name}"


def profile_owner(name: str) -> str:
    return f"profile:{name}"


def _deny_all(owner: str, direction: str) -> tuple[RenderedRule, ...]:
    return (RenderedRule(action="Deny", rule_id=_digest(f"{owner}\0{direction}\0broken", 16)),)


def _render_rule(rule: Rule, namespace: str | None, rule_id: str, specs: set[IPSetSpec]) -> RenderedRule:
    if rule.http is not None:
        raise Unrenderable("HTTP matches need an application-layer policy engine")
    if rule.source.services is not None or rule.destination.services is not None:
        raise Unrenderable("Kubernetes Service matches are not supported")
    fields: dict[str, Any] = {}
    protocol = port_protocol(rule.protocol) if rule.protocol is not None else None
    _render_side("src", rule.source, namespace, protocol, specs, fields)
    _render_side("dst", rule.destination, namespace, protocol, specs, fields)
    if rule.icmp is not None:
        fields["icmp_type"] = rule.icmp.type
        fields["icmp_code"] = rule.icmp.code
    if rule.notICMP is not None:
        fields["not_icmp_type"] = rule.notICMP.type
        fields["not_icmp_code"] = rule.notICMP.code
    return RenderedRule(
        action=rule.action,
        rule_id=rule_id,
        ip_version=rule.ip_version(),
        protocol=rule.protocol,
        not_protocol=rule.notProtocol,
        **fields,
    )


def _render_side(
    side: str,
    ent: EntityRule,
    namespace: str | None,
    protocol: str | None,
    specs: set[IPSetSpec],
    fields: dict[str, Any],
) -> None:
    sa = ent.serviceAccounts
    positive = rule_selector(
        namespace,
        ent.selector,
        ent.namespaceSelector,
        tuple(sa.names) if sa is not None and sa.names else None,
        sa.selector if sa is not None else None,
    )
    ids: list[str] = []
    not_ids: list[str] = []
    if positive is not None:
        ids.append(_use(selector_set(positive), specs))
    if ent.notSelector:
        not_ids.append(_use(selector_set(parse_cached(ent.notSelector)), specs))
    if ent.nets:
        if len(ent.nets) <= INLINE_NETS_MAX:
            fields[f"{side}_nets"] = tuple(ent.nets)
        else:
            ids.append(_use(nets_set(ent.nets), specs))
    if ent.notNets:
        if len(ent.notNets) <= INLINE_NETS_MAX:
            fields[f"not_{side}_nets"] = tuple(ent.notNets)
        else:
            not_ids.append(_use(nets_set(ent.notNets), specs))
    if ids:
        fields[f"{side}_ip_set_ids"] = tuple(ids)
    if not_ids:
        fields[f"not_{side}_ip_set_ids"] = tuple(not_ids)
    for field, ports in ((f"{side}", ent.ports), (f"not_{side}", ent.notPorts)):
        if not ports:
            continue
        ranges, names = _split_ports(ports)
        if ranges:
            fields[f"{field}_ports"] = ranges
        if names:
            if protocol is None:
                raise Unrenderable("named ports need a protocol")
            # A named port belongs to the endpoints the rule selects (all endpoints if it selects none).
            selector = positive if positive is not None else ALL
            fields[f"{field}_named_port_set_ids"] = tuple(
                _use(named_port_set(selector, protocol, name), specs) for name in names
            )


def _use(spec: IPSetSpec, specs: set[IPSetSpec]) -> str:
    specs.add(spec)
    return spec.set_id


def _split_ports(ports: Sequence[int | str]) -> tuple[tuple[tuple[int, int], ...], tuple[str, ...]]:
    ranges: list[tuple[int, int]] = []
    names: list[str] = []
    for port in ports:
        if isinstance(port, int):
            ranges.append((port, port))
        elif ":" in port:
            lo, _, hi = port.partition(":")
            ranges.append((int(lo), int(hi)))
        elif port not in names:
            names.append(port)
    return tuple(ranges), tuple(names)


# ---- shared sets -----------------------------------------------------------------------------------


class RuleScanner:
    """Renders policies and profiles and reference-counts the IP sets their renderings use."""

    def __init__(self, members: SetSink) -> None:
        self._members = members
        self._refs: dict[str, int] = {}

    def render_policy(self, pid: PolicyID, rules: PolicyRules) -> tuple[PolicyUpdate, frozenset[IPSetSpec]]:
        owner = policy_owner(pid)
        specs: frozenset[IPSetSpec] = frozenset()
        inbound: tuple[RenderedRule, ...] = ()
        outbound: tuple[RenderedRule, ...] = ()
        if rules.broken:
            inbound = _deny_all(owner, "inbound") if rules.inbound else ()
            outbound = _deny_all(owner, "outbound") if rules.outbound else ()
        else:
            if rules.inbound:
                inbound, used = render_rules(owner, "inbound", rules.ingress, rules.namespace)
                specs |= used
            if rules.outbound:
                outbound, used = render_rules(owner, "outbound", rules.egress, rules.namespace)
                specs |= used
        update = PolicyUpdate(
            policy_id=pid,
            inbound=inbound,
            outbound=outbound,
            untracked=rules.untracked,
            pre_dnat=rules.pre_dnat,
            apply_on_forward=rules.apply_on_forward,
        )
        return update, specs

    def render_profile(self, name: str, rules: ProfileRules | None) -> tuple[ProfileUpdate, frozenset[IPSetSpec]]:
        """A profile that a local endpoint lists but that does not exist renders with no rules: it allows
        nothing, so traffic falls through to the final drop (and the dataplane still finds the profile)."""
        owner = profile_owner(name)
        if rules is None:
            return ProfileUpdate(name, (), ()), frozenset()
        if rules.broken:
            return ProfileUpdate(name, _deny_all(owner, "inbound"), _deny_all(owner, "outbound")), frozenset()
        inbound, used_in = render_rules(owner, "inbound", rules.ingress, None)
        outbound, used_out = render_rules(owner, "outbound", rules.egress, None)
        return ProfileUpdate(name, inbound, outbound), used_in | used_out

    def acquire(self, specs: Iterable[IPSetSpec]) -> None:
        refs = self._refs
        for spec in specs:
            count = refs.get(spec.set_id, 0)
            refs[spec.set_id] = count + 1
            if count == 0:
                self._members.add_set(spec)

    def release(self, specs: Iterable[IPSetSpec]) -> None:
        refs = self._refs
        for spec in specs:
            count = refs[spec.set_id]
            if count == 1:
                del refs[spec.set_id]
                self._members.remove_set(spec.set_id)
            else:
                refs[spec.set_id] = count - 1

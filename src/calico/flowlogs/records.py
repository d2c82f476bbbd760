"""A flow log record: what Felix writes for one flow and one flush interval, as one JSON line.

In: the aggregator's view of a flow (its key, endpoints, verdict, policy trace and counts). Out: `FlowRecord`,
its JSON line (`to_json`) and back (`from_json`, ValueError naming the field), and the filters `calicoctl
flows` offers (`matches`). Pure.

    {"start_time": 1735689600, "end_time": 1735689605, "host": "h1", "proto": "udp",
     "source_ip": "198.18.1.2", "source_port": 40000, "source_type": "wep", "source_namespace": "prod",
     "source_name": "client", "source_labels": {"app": "client"},
     "dest_ip": "198.18.1.3", "dest_port": 8080, "dest_type": "wep", "dest_namespace": "prod",
     "dest_name": "web", "dest_labels": {"app": "web"},
     "action": "allow" | "deny",
     "policies": [{"direction": "egress", "kind": "policy", "tier": "default", "policy": "prod/out",
                   "rule": 0, "action": "allow"},
                  {"direction": "ingress", "kind": "tier_default", "tier": "default", "policy": "",
                   "rule": null, "action": "deny"}],
     "packets": 3, "bytes": 234, "reply_packets": 0, "reply_bytes": 0, "counts_from": "log" | "conntrack",
     "pending_action": "deny", "pending_policies": [...]}     (the last two only while staged policies exist)

Types as Calico's flow logs name them: `wep` (workload endpoint), `hep` (host endpoint), `net` (anything
else). `policies` is the trace, in the order the packet met them: the sender's egress (or a host endpoint's
stages), then the receiver's ingress; `kind` is "policy", "profile", or the reason of one of Felix's own
verdicts (`ruleids.REASON_NAMES`). Counts: from conntrack for allowed flows it still tracked ("conntrack"),
otherwise the logged packets ("log": with sampling or the kernel's rate limit, a lower bound). The pending
verdict is what the flow would get with the staged policies in force (`calico.felix.pending`): never enforced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from calico.dataplane import ruleids as rid


@dataclass(frozen=True, slots=True)
class TraceStep:
    direction: str  # "ingress" | "egress"
    kind: str  # "policy" | "profile" | a reason
    tier: str
    policy: str  # `namespace/name`, a global policy's or a profile's name; "" for Felix's own verdicts
    rule: int | None
    action: str  # "allow" | "deny" | "pass"

    @classmethod
    def of(cls, r: rid.RuleID) -> TraceStep:
        kind = "policy" if r.kind is rid.Kind.POLICY else "profile" if r.kind is rid.Kind.PROFILE \
            else rid.REASON_NAMES[r.kind]
        return cls(rid.DIRECTION_NAMES[r.direction], kind, r.tier, r.policy, r.index, rid.ACTION_NAMES[r.action])


@dataclass(frozen=True, slots=True)
class Endpoint:
    type: str  # "wep" | "hep" | "net"
    namespace: str = ""
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


NET = Endpoint("net")


@dataclass(frozen=True, slots=True)
class FlowRecord:
    start_time: int
    end_time: int
    host: str
    proto: str
    source_ip: str
    source_port: int
    source: Endpoint
    dest_ip: str
    dest_port: int
    dest: Endpoint
    action: str  # "allow" | "deny"
    policies: tuple[TraceStep, ...]
    packets: int
    bytes: int
    reply_packets: int = 0
    reply_bytes: int = 0
    counts_from: str = "log"  # "log" | "conntrack"
    # With staged policies in force (only while any exist): the verdict, and the step that decided each stage.
    pending_action: str | None = None
    pending_policies: tuple[TraceStep, ...] = ()

    def to_json(self) -> str:
        doc: dict[str, Any] = {"start_time": self.start_time, "end_time": self.end_time, "host": self.host,
                               "proto": self.proto}
        for side, ip, port, ep in (("source", self.source_ip, self.source_port, self.source),
                                   ("dest", self.dest_ip, self.dest_port, self.dest)):
            doc.update({f"{side}_ip": ip, f"{side}_port": port, f"{side}_type": ep.type,
                        f"{side}_namespace": ep.namespace, f"{side}_name": ep.name,
                        f"{side}_labels": dict(ep.labels)})
        doc.update({"action": self.action, "policies": [asdict(s) for s in self.policies],
                    "packets": self.packets, "bytes": self.bytes, "reply_packets": self.reply_packets,
                    "reply_bytes": self.reply_bytes, "counts_from": self.counts_from})
        if self.pending_action is not None:
            doc.update({"pending_action": self.pending_action,
                        "pending_policies": [asdict(s) for s in self.pending_policies]})
        return json.dumps(doc, separators=(",", ":"), sort_keys=False)

    def matches(self, action: str | None = None, namespace: str | None = None, endpoint: str | None = None,
                policy: str | None = None) -> bool:
        """`calicoctl flows` filters: each given one must hold. `endpoint` matches either side's name (or
        `namespace/name`); `namespace` either side's namespace; `policy` any trace step's policy (`name`,
        `namespace/name` or `tier/namespace/name`)."""
        if action is not None and self.action != action.lower():
            return False
        sides = (self.source, self.dest)
        if namespace is not None and namespace not in (s.namespace for s in sides):
            return False
        if endpoint is not None and not any(endpoint in (s.name, f"{s.namespace}/{s.name}") for s in sides if s.name):
            return False
        names = ({s.policy, s.policy.rsplit("/", 1)[-1], f"{s.tier}/{s.policy}"} for s in self.policies if s.policy)
        return policy is None or any(policy in n for n in names)


def _get(doc: Mapping[str, Any], name: str, typ: type) -> Any:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, typ):  # no field is a boolean
        raise ValueError(f"flow record: field {name!r} is {value!r}")
    return value


def from_json(line: str) -> FlowRecord:
    try:
        doc = json.loads(line)
    except ValueError as e:
        raise ValueError(f"flow record: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError("flow record: not a JSON object")

    def endpoint(side: str) -> Endpoint:
        labels = _get(doc, f"{side}_labels", dict)
        return Endpoint(_get(doc, f"{side}_type", str), _get(doc, f"{side}_namespace", str),
                        _get(doc, f"{side}_name", str), {str(k): str(v) for k, v in labels.items()})

    def trace(field: str) -> tuple[TraceStep, ...]:
        steps = []
        for i, s in enumerate(_get(doc, field, list)):
            if not isinstance(s, dict):
                raise ValueError(f"flow record: {field}[{i}] is not an object")
            rule = s.get("rule")
            if rule is not None and not isinstance(rule, int):
                raise ValueError(f"flow record: {field}[{i}].rule is {rule!r}")
            steps.append(TraceStep(_get(s, "direction", str), _get(s, "kind", str), _get(s, "tier", str),
                                   _get(s, "policy", str), rule, _get(s, "action", str)))
        return tuple(steps)

    pending = _get(doc, "pending_action", str) if "pending_action" in doc else None
    return FlowRecord(
        _get(doc, "start_time", int), _get(doc, "end_time", int), _get(doc, "host", str), _get(doc, "proto", str),
        _get(doc, "source_ip", str), _get(doc, "source_port", int), endpoint("source"),
        _get(doc, "dest_ip", str), _get(doc, "dest_port", int), endpoint("dest"),
        _get(doc, "action", str), trace("policies"), _get(doc, "packets", int), _get(doc, "bytes", int),
        _get(doc, "reply_packets", int), _get(doc, "reply_bytes", int), _get(doc, "counts_from", str),
        pending, trace("pending_policies") if pending is not None else (),
    )

"""Felix's per-policy counters in the datastore: where each host's live, and how to write and read them.

In: a host's counter snapshot (`RuleID` -> packets, bytes; `calico.felix.counters`), or the stored value. Out:
the key and its JSON (`encode_counters`), and for readers such as `calicoctl explain` the decoded
`HostCounters` (`decode_counters`; `policy_counts` picks one policy's rules from many hosts). Pure: the
writer is `calico.felix.counters.CounterPublisher`; a reader lists `counters_prefix()` with its own KVStore.

Key (next to Felix's `status` key, with a lease of ReportingTTLSecs, so a stopped Felix's counters go):

    /calico/felix/v2/<region>/host/<hostname>/policy_counters

Value (only what counted something; a rule absent from `rules` has counted nothing on that host):

    {"time": "2025-01-01T00:00:00Z",
     "rules": [{"kind": "policy", "tier": "default", "namespace": "prod", "name": "allow-web",
                "direction": "ingress", "rule": 0, "action": "allow", "packets": 12, "bytes": 960}, ...],
     "verdicts": [{"reason": "tier_default", "action": "deny", "stage": "workload", "tier": "default",
                   "direction": "ingress", "packets": 3, "bytes": 180}, ...]}

`kind` is "policy" or "profile" (a profile's name in `name`, tier and namespace empty); `namespace` is empty
for a global policy. Reasons are `ruleids.REASON_NAMES`' values; stages "workload", "host", "forward",
"untracked", "preDNAT".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from calico.dataplane import ruleids as rid
from calico.datastore.keys import FELIX_STATUS_PREFIX
from calico.resources.records import json_object

__all__ = ["COUNTERS_KEY", "HostCounters", "PolicyCounts", "RuleCount", "VerdictCount", "counters_key",
           "counters_prefix", "decode_counters", "encode_counters", "parse_counters_key", "policy_counts"]

COUNTERS_KEY = "policy_counters"
STAGE_NAMES = {rid.Stage.NONE: "", rid.Stage.WORKLOAD: "workload", rid.Stage.HOST: "host",
               rid.Stage.FORWARD: "forward", rid.Stage.UNTRACKED: "untracked", rid.Stage.PRE_DNAT: "preDNAT"}
_KIND_NAMES = {rid.Kind.POLICY: "policy", rid.Kind.PROFILE: "profile"}


def counters_key(hostname: str, region: str = "no-region") -> str:
    return f"{FELIX_STATUS_PREFIX}{region}/host/{hostname}/{COUNTERS_KEY}"


def counters_prefix() -> str:
    """List this prefix and keep the keys `parse_counters_key` accepts: every host's counters."""
    return FELIX_STATUS_PREFIX


def parse_counters_key(key: str) -> tuple[str, str] | None:
    """(region, hostname) of a counters key; None for any other key."""
    if not key.startswith(FELIX_STATUS_PREFIX):
        return None
    parts = key[len(FELIX_STATUS_PREFIX):].split("/")
    if len(parts) != 4 or parts[1] != "host" or parts[3] != COUNTERS_KEY or not parts[0] or not parts[2]:
        return None
    return parts[0], parts[2]


@dataclass(frozen=True, slots=True)
class RuleCount:
    """What one policy's (or profile's) rule counted on one host."""

    kind: str  # "policy" | "profile"
    tier: str
    namespace: str
    name: str
    direction: str  # "ingress" | "egress"
    rule: int
    action: str  # "allow" | "deny" | "pass"
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class VerdictCount:
    """What one of Felix's own verdicts (tier default, profile fall-through, fail closed, ...) counted."""

    reason: str
    action: str
    stage: str
    tier: str
    direction: str
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class HostCounters:
    hostname: str
    time: str
    rules: tuple[RuleCount, ...]
    verdicts: tuple[VerdictCount, ...]

    def for_policy(self, tier: str, name: str, namespace: str | None = None) -> tuple[RuleCount, ...]:
        """The rules of one policy (namespace None or "": a global policy) that counted something here."""
        ns = namespace or ""
        return tuple(r for r in self.rules if r.kind == "policy" and (r.tier, r.namespace, r.name) == (tier, ns, name))

    def for_profile(self, name: str) -> tuple[RuleCount, ...]:
        return tuple(r for r in self.rules if r.kind == "profile" and r.name == name)


# --- writing -------------------------------------------------------------------------------------------------


def encode_counters(time: str, snapshot: Mapping[rid.RuleID, tuple[int, int]]) -> bytes:
    """The stored JSON for a snapshot (deterministic: equal snapshots give equal bytes, the time aside)."""
    rules: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    for r, (packets, nbytes) in sorted(snapshot.items(), key=lambda kv: kv[0].text):
        if packets == 0 and nbytes == 0:
            continue
        direction, action = rid.DIRECTION_NAMES[r.direction], rid.ACTION_NAMES[r.action]
        if r.is_rule:
            rules.append({"kind": _KIND_NAMES[r.kind], "tier": r.tier, "namespace": r.namespace, "name": r.name,
                          "direction": direction, "rule": r.index, "action": action,
                          "packets": packets, "bytes": nbytes})
        else:
            verdicts.append({"reason": rid.REASON_NAMES[r.kind], "action": action, "stage": STAGE_NAMES[r.stage],
                             "tier": r.tier, "direction": direction, "packets": packets, "bytes": nbytes})
    return json.dumps({"time": time, "rules": rules, "verdicts": verdicts}, separators=(",", ":")).encode()


# --- reading -------------------------------------------------------------------------------------------------


def _field(obj: Mapping[str, Any], name: str, typ: type, where: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise ValueError(f"{where}: field {name!r} must be {typ.__name__}, not {value!r}")
    return value


def decode_counters(hostname: str, value: bytes) -> HostCounters:
    """A stored value -> `HostCounters`; ValueError naming the host and the field that is wrong."""
    where = f"policy counters of host {hostname}"
    doc = json_object(where, value, ValueError)
    rules, verdicts = [], []
    for i, item in enumerate(_field(doc, "rules", list, where)):
        at = f"{where}: rules[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{at}: not an object")
        rules.append(RuleCount(*(_field(item, n, str, at) for n in ("kind", "tier", "namespace", "name", "direction")),
                               _field(item, "rule", int, at), _field(item, "action", str, at),
                               _field(item, "packets", int, at), _field(item, "bytes", int, at)))
    for i, item in enumerate(_field(doc, "verdicts", list, where)):
        at = f"{where}: verdicts[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{at}: not an object")
        verdicts.append(VerdictCount(*(_field(item, n, str, at) for n in ("reason", "action", "stage", "tier",
                                                                           "direction")),
                                     _field(item, "packets", int, at), _field(item, "bytes", int, at)))
    return HostCounters(hostname, _field(doc, "time", str, where), tuple(rules), tuple(verdicts))


@dataclass(frozen=True, slots=True)
class PolicyCounts:
    """One policy's rule counts across hosts, and the hosts whose stored value could not be read."""

    by_host: dict[str, tuple[RuleCount, ...]]  # every host that reports counters (empty: counted nothing)
    errors: dict[str, str]  # host -> what is wrong with its value

    def totals(self) -> dict[tuple[str, int, str], tuple[int, int]]:
        """(direction, rule index, action) -> (packets, bytes) summed over the hosts."""
        out: dict[tuple[str, int, str], tuple[int, int]] = {}
        for counts in self.by_host.values():
            for c in counts:
                p, b = out.get((c.direction, c.rule, c.action), (0, 0))
                out[(c.direction, c.rule, c.action)] = (p + c.packets, b + c.bytes)
        return out


def policy_counts(kvs: Iterable[tuple[str, bytes]], tier: str, name: str, namespace: str | None = None,
                  profile: bool = False) -> PolicyCounts:
    """From listed (key, value) pairs (any keys: only counters keys are read), one policy's (or, with `profile`,
    one profile's) rule counts per host."""
    by_host: dict[str, tuple[RuleCount, ...]] = {}
    errors: dict[str, str] = {}
    for key, value in kvs:
        parsed = parse_counters_key(key)
        if parsed is None:
            continue
        try:
            host = decode_counters(parsed[1], value)
        except ValueError as e:
            errors[parsed[1]] = str(e)
            continue
        by_host[parsed[1]] = host.for_profile(name) if profile else host.for_policy(tier, name, namespace)
    return PolicyCounts(by_host, errors)

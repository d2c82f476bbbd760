"""What the kernel counted for the rules of an explanation, from every host's Felix status.

Enters: an `Explanation` and the listed keys under Felix's status prefix (each Felix publishes its per-rule
counters there: `calico.felix.counter_status`). Leaves: the explanation with packets and bytes on every rule
of every policy and profile it shows (summed over the hosts), the hosts that reported, and notes for hosts
whose value could not be read. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from calico.explain.trace import Explanation
from calico.felix.counter_status import HostCounters, decode_counters, parse_counters_key


def attach_counters(explanation: Explanation, kvs: Iterable[tuple[str, bytes]]) -> None:
    hosts: list[HostCounters] = []
    for key, value in kvs:
        parsed = parse_counters_key(key)
        if parsed is None:
            continue
        try:
            hosts.append(decode_counters(parsed[1], value))
        except ValueError as e:
            explanation.notes.append(f"counters: {e}")
    for stage, policy in explanation.policies():
        totals: dict[tuple[int, str], tuple[int, int]] = {}
        counted_on = []
        for host in hosts:
            counts = (host.for_profile(policy.resource) if policy.kind == "profile"
                      else host.for_policy(policy.tier, policy.resource, policy.namespace))
            counted_on.append(host.hostname)
            for c in counts:
                if c.direction == stage.stage:
                    p, b = totals.get((c.rule, c.action), (0, 0))
                    totals[(c.rule, c.action)] = (p + c.packets, b + c.bytes)
        policy.counted_on = sorted(counted_on)
        for rule in policy.rules:
            if rule.index is not None:
                rule.packets, rule.bytes = totals.get((rule.index, rule.action.lower()), (0, 0))

"""Namespace-aware selectors: the selector fields of a policy or rule in, one plain `Selector` out.

Enters: selector text as stored in resources (canonical), the owning policy's namespace, a rule's
`namespaceSelector` and `serviceAccounts`. Leaves: a single `Selector` over *effective labels* that the
label indexes evaluate, so namespace and service-account scoping need no special casing downstream.

How scoping becomes labels (see `endpoints.py`, which puts these labels on every item):
- every namespaced item (WorkloadEndpoint, NetworkSet) carries `projectcalico.org/namespace: <ns>`;
  non-namespaced items (HostEndpoint, GlobalNetworkSet) never do;
- a namespace's labels reach its items prefixed with `pcns.` (and `pcns.projectcalico.org/name: <ns>`);
- a service account's labels reach its workloads prefixed with `pcsa.`, its name as
  `projectcalico.org/serviceaccount`.

So a namespaceSelector `team == "a"` becomes `has(projectcalico.org/namespace) && pcns.team == "a"`,
`global()` becomes `!has(projectcalico.org/namespace)`, and a namespaced policy's own or rule selector
(without namespaceSelector) gains `projectcalico.org/namespace == "<ns>"`. The scoping is part of the
canonical text, so two rules share an IP set exactly when they select the same things.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from calico.selector import Selector, SelectorError, parse
from calico.selector.ast import All, And, Equals, Global, Has, In, Node, Not, Or, and_

NS_LABEL = "projectcalico.org/namespace"
ORCH_LABEL = "projectcalico.org/orchestrator"
SA_LABEL = "projectcalico.org/serviceaccount"
NS_PREFIX = "pcns."
SA_PREFIX = "pcsa."
NS_NAME_LABEL = NS_PREFIX + "projectcalico.org/name"
SA_NAME_LABEL = SA_PREFIX + "projectcalico.org/name"

ALL = Selector(All())

__all__ = [
    "ALL",
    "NS_LABEL",
    "NS_NAME_LABEL",
    "NS_PREFIX",
    "ORCH_LABEL",
    "SA_LABEL",
    "SA_NAME_LABEL",
    "SA_PREFIX",
    "parse_cached",
    "policy_selector",
    "rule_selector",
]


@lru_cache(maxsize=16384)
def parse_cached(text: str) -> Selector:
    """Parsed selector; many policies and rules repeat the same few selector texts."""
    return parse(text)


def _prefixed(node: Node, prefix: str) -> Node:
    """The same tree reading `prefix + key` wherever it read `key`."""
    kind = type(node)
    if kind is All:
        return node
    if kind is Global:
        raise SelectorError("global() cannot be combined with other selector terms here")
    if kind is Not:
        return Not(_prefixed(node.operand, prefix))  # type: ignore[attr-defined]
    if kind is And or kind is Or:
        return kind(tuple(_prefixed(o, prefix) for o in node.operands))  # type: ignore[attr-defined,call-arg]
    key = getattr(node, "key", None)
    if key is None:
        raise SelectorError(f"cannot scope selector node {node}")
    return dataclasses.replace(node, key=prefix + key)  # type: ignore[type-var]


def _root(text: str) -> Node:
    return parse_cached(text).root


def _combine(parts: list[Node]) -> Selector:
    # all() adds nothing to a conjunction; dropping it keeps equal meanings at equal text (one IP set).
    useful = [p for p in parts if type(p) is not All]
    if not useful:
        return ALL
    return Selector(and_(useful))


def _namespace_parts(namespace_selector: str) -> list[Node]:
    if namespace_selector.strip() == "global()":
        return [Not(Has(NS_LABEL))]
    return [Has(NS_LABEL), _prefixed(_root(namespace_selector), NS_PREFIX)]


@lru_cache(maxsize=16384)
def policy_selector(
    selector: str,
    namespace: str | None,
    namespace_selector: str | None = None,
    service_account_selector: str | None = None,
) -> Selector:
    """Which endpoints a policy applies to.

    A namespaced policy (NetworkPolicy) applies only in its namespace; a GlobalNetworkPolicy's
    `namespaceSelector` limits it to endpoints in matching namespaces; `serviceAccountSelector` to
    workloads whose service account labels match. Raises SelectorError if the result is too big.
    """
    parts: list[Node] = []
    if namespace is not None:
        parts.append(Equals(NS_LABEL, namespace))
    elif namespace_selector:
        parts.extend(_namespace_parts(namespace_selector))
    parts.append(_root(selector))
    if service_account_selector:
        parts.extend([Has(SA_LABEL), _prefixed(_root(service_account_selector), SA_PREFIX)])
    return _combine(parts)


@lru_cache(maxsize=16384)
def rule_selector(
    namespace: str | None,
    selector: str | None,
    namespace_selector: str | None,
    sa_names: tuple[str, ...] | None,
    sa_selector: str | None,
) -> Selector | None:
    """The positive match of one side of a rule (selector, namespaceSelector, serviceAccounts), or None
    when the rule says nothing about which endpoints (then any address matches).

    In a namespaced policy a selector or service-account match without namespaceSelector is limited to
    the policy's namespace; in a global policy it spans every namespace and non-namespaced things.
    """
    if not selector and not namespace_selector and not sa_names and not sa_selector:
        return None
    parts: list[Node] = []
    if namespace_selector:
        parts.extend(_namespace_parts(namespace_selector))
    elif namespace is not None:
        parts.append(Equals(NS_LABEL, namespace))
    if selector:
        parts.append(_root(selector))
    if sa_names or sa_selector:
        parts.append(Has(SA_LABEL))
        if sa_names:
            parts.append(In(SA_LABEL, sa_names))
        if sa_selector:
            parts.append(_prefixed(_root(sa_selector), SA_PREFIX))
    return _combine(parts)

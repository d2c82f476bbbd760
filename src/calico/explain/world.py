"""The calculation graph's view of one flow's endpoints: what Felix on their hosts would hold.

Enters: a `Snapshot` and the flow's two `Party`s. Leaves: the parties resolved to endpoints (`Endpoint`: kind,
name, node, addresses; an address that belongs to a workload or a host endpoint is that endpoint, as the
kernel sees it after routing), and a `World`: the `DesiredState` folded from the same `CalcGraph` Felix runs
(with those endpoints as its local ones), the IP sets' members, and each rendered rule's source (index and
rule as written). `LookupError` names a party that is not in the datastore.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from calico.calculation import events as ev
from calico.calculation.graph import CalcGraph
from calico.calculation.rule_scanner import policy_owner, profile_owner, rendered_rule_id
from calico.calculation.selectors import NS_LABEL, policy_selector
from calico.calculation.types import EndpointKey, HostEndpointKey
from calico.dataplane.state import DesiredState
from calico.datastore.keys import ResourceKey, kind_prefix, parse_key
from calico.explain.flow import Party, PartyKind
from calico.explain.snapshot import Snapshot
from calico.resources import FelixConfiguration, HostEndpoint, Rule, WorkloadEndpoint, parse_resource
from calico.selector import SelectorError


@dataclass(frozen=True, slots=True)
class Endpoint:
    kind: PartyKind  # WORKLOAD or HOST
    name: str  # "NS/NAME" or the host endpoint's name
    node: str | None
    addresses: tuple[str, ...]  # without prefix length
    key: EndpointKey
    nats: tuple[tuple[str, str], ...] = ()  # (external, internal): its 1:1 NATs (floating IPs)

    @property
    def label(self) -> str:
        return self.name if self.kind is PartyKind.WORKLOAD else f"hep:{self.name}"


def _decode(value: bytes, what: str) -> WorkloadEndpoint | HostEndpoint:
    try:
        res = parse_resource(json.loads(value))
    except Exception as e:
        raise LookupError(f"{what}: its stored value is not valid ({e})") from None
    assert isinstance(res, WorkloadEndpoint | HostEndpoint)
    return res


def _workload(ns: str, name: str, res: WorkloadEndpoint) -> Endpoint:
    addrs = tuple(str(ipaddress.ip_interface(n).ip) for n in res.spec.ipNetworks or ())
    nats = tuple((str(ipaddress.ip_address(n.externalIP)), str(ipaddress.ip_address(n.internalIP)))
                 for n in res.spec.ipNATs or ())
    return Endpoint(PartyKind.WORKLOAD, f"{ns}/{name}", res.spec.node, addrs, ev.WorkloadEndpointID(ns, name), nats)


def _host(name: str, res: HostEndpoint) -> Endpoint:
    addrs = tuple(str(ipaddress.ip_address(a)) for a in res.spec.expectedIPs or ())
    return Endpoint(PartyKind.HOST, name, res.spec.node, addrs, HostEndpointKey(name))


def resolve(snapshot: Snapshot, party: Party) -> Endpoint | None:
    """The endpoint a party is (None: a bare address no endpoint holds)."""
    if party.kind is PartyKind.WORKLOAD:
        assert party.namespace is not None and party.endpoint is not None
        value = snapshot.values.get(ResourceKey("workloadendpoints", party.endpoint, party.namespace).path())
        if value is None:
            raise LookupError(f"no WorkloadEndpoint {party.name}")
        res = _decode(value, f"WorkloadEndpoint {party.name}")
        assert isinstance(res, WorkloadEndpoint)
        return _workload(party.namespace, party.endpoint, res)
    if party.kind is PartyKind.HOST:
        value = snapshot.values.get(ResourceKey("hostendpoints", party.name).path())
        if value is None:
            raise LookupError(f"no HostEndpoint {party.name}")
        res = _decode(value, f"HostEndpoint {party.name}")
        assert isinstance(res, HostEndpoint)
        return _host(party.name, res)
    return _by_address(snapshot, party.name)


def _by_address(snapshot: Snapshot, address: str) -> Endpoint | None:
    addr = ipaddress.ip_address(address)
    needle = address.encode()  # a cheap filter before decoding: the address appears in the value as written
    wep_prefix, hep_prefix = kind_prefix("workloadendpoints"), kind_prefix("hostendpoints")
    for key, value in snapshot.values.items():
        if needle not in value or not (key.startswith(wep_prefix) or key.startswith(hep_prefix)):
            continue
        try:
            res = _decode(value, key)
        except LookupError:
            continue
        if isinstance(res, WorkloadEndpoint):
            if any(ipaddress.ip_interface(n).ip == addr for n in res.spec.ipNetworks or ()) or any(
                    ipaddress.ip_address(n.externalIP) == addr for n in res.spec.ipNATs or ()):
                return _workload(res.metadata.namespace or "", res.metadata.name, res)
        elif any(ipaddress.ip_address(a) == addr for a in res.spec.expectedIPs or ()):
            return _host(res.metadata.name, res)
    return None


_ENDPOINT_PREFIXES = (kind_prefix("workloadendpoints"), kind_prefix("hostendpoints"))
_POLICY_PREFIXES = (kind_prefix("networkpolicies"), kind_prefix("globalnetworkpolicies"))


def _path(end: Endpoint) -> str:
    if isinstance(end.key, ev.WorkloadEndpointID):
        return ResourceKey("workloadendpoints", end.key.name, end.key.namespace).path()
    return ResourceKey("hostendpoints", end.key.name).path()


class World:
    """The desired state Felix would compute for `endpoints`, wherever they are, as far as it can concern a flow
    between `addresses`.

    Only the IP sets' answers for the flow's two addresses matter, and an endpoint is a member of a set only
    for its own addresses; so an endpoint that holds neither address cannot change the verdict and is not fed
    to the graph (its JSON does not contain either address: a cheap, exact superset test). Likewise a policy
    whose selector matches neither endpoint is never active here (renders no rule, acquires no set): it is
    not fed either (see `_may_select`). The work is then proportional to what selects the two endpoints, not
    to the datastore's size."""

    def __init__(self, snapshot: Snapshot, endpoints: list[Endpoint], addresses: tuple[str, ...]) -> None:
        keys = {e.key for e in endpoints}
        paths = {_path(e) for e in endpoints}
        holds_address = re.compile(b"|".join(re.escape(a.encode()) for a in addresses)).search
        self.graph = CalcGraph("", is_local=lambda _node, key: key in keys)
        policies: list[tuple[str, bytes]] = []
        for key, value in snapshot.values.items():
            if key.startswith(_ENDPOINT_PREFIXES) and key not in paths and not holds_address(value):
                continue
            if key.startswith(_POLICY_PREFIXES):
                policies.append((key, value))  # after the endpoints' labels (profiles included) are known
                continue
            self.graph.on_update(key, value)
        labels = [found for k in keys if (found := self.graph.resolver.endpoint_labels(k)) is not None]
        for key, value in policies:
            if _may_select(key, value, labels):
                self.graph.on_update(key, value)
        self.graph.on_in_sync()
        self.state = DesiredState()
        self.state.apply_all(self.graph.flush())
        self._sources: dict[tuple[str, bool], dict[str, tuple[int, Rule]]] = {}
        self._snapshot = snapshot

    def endpoint_to_host_action(self, node: str | None) -> str:
        """DefaultEndpointToHostAction on `node` (its `node.<name>` FelixConfiguration over `default`; Calico's
        default Drop); a value that does not validate is skipped, as Felix skips it."""
        for name in (f"node.{node}" if node else None, "default"):
            raw = self._snapshot.values.get(ResourceKey(FelixConfiguration.PLURAL, name).path()) if name else None
            if raw is None:
                continue
            try:
                config = parse_resource(json.loads(raw))
            except ValueError:  # bad JSON, or a value Felix would refuse (ResourceError): the next layer decides
                continue
            if isinstance(config, FelixConfiguration) and config.spec.defaultEndpointToHostAction:
                return config.spec.defaultEndpointToHostAction
        return "Drop"

    def members(self, set_id: str) -> set[str] | None:
        ipset = self.state.ipsets.get(set_id)
        return None if ipset is None else ipset.members

    def describe(self, set_id: str) -> str:
        spec = self.graph.ipsets.spec(set_id)
        if spec is None:
            return f"set {set_id}"
        if spec.named_port is not None:
            proto, name = spec.named_port
            of = "" if spec.selector is None or str(spec.selector) == "all()" else f" of {spec.selector}"
            return f"named port {name!r} ({proto}){of}"
        if spec.selector is not None:
            return f"selector {spec.selector}"
        return f"nets {', '.join(sorted(spec.nets))}"

    def workload(self, key: EndpointKey) -> ev.WorkloadEndpointUpdate | None:
        return self.state.endpoints.get(key) if isinstance(key, ev.WorkloadEndpointID) else None

    def host_endpoint(self, key: EndpointKey) -> ev.HostEndpointUpdate | None:
        return self.state.host_endpoints.get(key.name) if isinstance(key, HostEndpointKey) else None

    def rule_sources(self, target: ev.PolicyID | str, inbound: bool) -> dict[str, tuple[int, Rule]]:
        """rule_id -> (index, rule as written) for a policy (PolicyID) or a profile (name), one direction."""
        cache_key = (repr(target), inbound)
        found = self._sources.get(cache_key)
        if found is None:
            direction = "inbound" if inbound else "outbound"
            rules: tuple[Rule, ...] = ()
            if isinstance(target, ev.PolicyID):
                owner = policy_owner(target)
                prules = self.graph.active_rules.policy_rules(target)
                if prules is not None:
                    rules = prules.ingress if inbound else prules.egress
            else:
                owner = profile_owner(target)
                frules = self.graph.active_rules.profile_rules(target)
                if frules is not None:
                    rules = frules.ingress if inbound else frules.egress
            found = {rendered_rule_id(owner, direction, i, r): (i, r) for i, r in enumerate(rules)}
            self._sources[cache_key] = found
        return found


def _may_select(key: str, value: bytes, labels: list[Mapping[str, str]]) -> bool:
    """Whether the policy stored at `key` can select an endpoint with one of `labels`, read from its selector
    fields with the graph's own scoping (`policy_selector`). True whenever the value is too odd to tell without
    decoding it: then the graph decodes it, and what it refuses is named in the explanation's notes. A value
    skipped here could not apply to these endpoints even if the rest of it were valid."""
    parsed = parse_key(key)
    if parsed is None:
        return True
    namespace = parsed.namespace  # None: a GlobalNetworkPolicy
    if namespace is not None and all(found.get(NS_LABEL) != namespace for found in labels):
        return False  # a namespaced policy's scoped selector requires its namespace; this spares the JSON
    try:
        spec = json.loads(value)["spec"]
        selectors = (spec["selector"], None if namespace else spec.get("namespaceSelector"),
                     spec.get("serviceAccountSelector"))
    except (ValueError, TypeError, KeyError, RecursionError):
        return True
    if not isinstance(selectors[0], str) or not all(isinstance(s, str | None) for s in selectors[1:]):
        return True
    selector, namespace_selector, account_selector = selectors
    try:  # an empty optional selector is no constraint, as the resource reads it
        scoped = policy_selector(selector, namespace, namespace_selector or None, account_selector or None)
    except SelectorError:
        return True
    return any(scoped.evaluate(found) for found in labels)

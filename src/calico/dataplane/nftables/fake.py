"""An in-memory nftables holding Calico's table, with the same interface as the real transports.

In: transactions of `ops.Op`, as the backend sends them; tampering calls from tests (as another program
would change the kernel) and packets counted (`count`). Out: the table it holds (`table`), and `list_table()`
/ `list_counters()` in the form `nft -j list table inet calico` / `nft -j list counters table inet calico`
have, so the backend's read-back, its comparison, its repair and its counter reads run unchanged on it.

It applies what the real kernel applies and refuses what it refuses (checked against nft 1.0.6 by
tests/dataplane/test_nft_transport_contract.py), atomically: a refused transaction changes nothing.
  - a rule, a verdict map element or a `jump` / `goto` / `@set` / `@map` / `counter name` reference needs what
    it names to exist;
  - a set, counter or chain still named by a rule or a map element cannot be deleted ("Device or resource busy");
  - deleting a missing element, set, counter, chain or map key, or flushing a missing chain: "No such file or
    directory"; declaring a counter that exists keeps its values;
  - re-declaring a set with another type or flags, an interval element overlapping another one, or a map key
    with another value (verdict or address): "File exists"; giving an existing regular chain a hook:
    "Operation not supported".
What it does not do: parse a rule's text beyond those references (a syntax error passes here, the real nft
tests catch it) or give rules an `expr` in listings (they carry their comment, which is what read-back
compares). Pure; `run` and `list_table` are async only to fit the interface.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calico.dataplane.nftables import ops
from calico.dataplane.nftables.model import NftChain, NftSet, TableModel
from calico.dataplane.nftables.names import FAMILY, TABLE, is_verdict_map, map_type, rule_tag
from calico.dataplane.nftables.transport import NftError

_QUOTED = re.compile(r'"[^"]*"')
_SET_REF = re.compile(r"@([^\s,}]+)")
_CHAIN_REF = re.compile(r"\b(?:jump|goto)\s+([^\s;,}]+)")
_COUNTER_REF = re.compile(r'counter name "([^"]+)"')
_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_HOOK = re.compile(r"type (\w+) hook (\w+) priority ([\w-]+)(?: ([+-]) (\d+))?; policy (\w+);")

ENOENT = "Could not process rule: No such file or directory"
EBUSY = "Could not process rule: Device or resource busy"
EEXIST = "Could not process rule: File exists"


@dataclass(slots=True)
class FakeRule:
    text: str
    comment: str | None  # what nft keeps of a rule we compare: its comment

    def refs(self) -> tuple[set[str], set[str]]:
        """(sets and maps it names with @, chains it jumps or goes to)."""
        bare = _QUOTED.sub('""', self.text)
        return set(_SET_REF.findall(bare)), set(_CHAIN_REF.findall(bare))

    def counters(self) -> set[str]:
        return set(_COUNTER_REF.findall(self.text))


@dataclass(slots=True)
class FakeChain:
    hook: str | None = None
    rules: list[FakeRule] = field(default_factory=list)


@dataclass(slots=True)
class FakeSet:
    type: str
    interval: bool
    elements: set[str] = field(default_factory=set)


@dataclass(slots=True)
class FakeTable:
    sets: dict[str, FakeSet] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {ifname: verdict} or {addr: addr}
    chains: dict[str, FakeChain] = field(default_factory=dict)
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (packets, bytes)
    limits: dict[str, str] = field(default_factory=dict)  # name -> "rate N/second burst M packets"

    def as_model(self) -> TableModel:
        """What it holds, in the renderer's terms (rules as text without comments), to compare with a model."""
        return TableModel(
            {n: NftSet(n, s.type, s.interval, frozenset(s.elements)) for n, s in self.sets.items()},
            {n: dict(m) for n, m in self.maps.items()},
            {n: NftChain(n, tuple(r.text for r in c.rules), c.hook) for n, c in self.chains.items()},
            set(self.counters),
            dict(self.limits),
        )


class FakeNft:
    def __init__(self) -> None:
        self.table: FakeTable | None = None
        self.transactions: list[tuple[ops.Op, ...]] = []  # every transaction it applied
        self.refused: list[tuple[tuple[ops.Op, ...], str]] = []  # and every one it refused, with the error
        self.failures: list[str] = []  # injected faults: the next transactions fail with these messages, in order

    # --- the transport interface --------------------------------------------------------------------

    async def run(self, transaction: Sequence[ops.Op]) -> None:
        txn = tuple(transaction)
        if not txn:
            return
        if self.failures:
            message = self.failures.pop(0)
            self.refused.append((txn, message))
            raise NftError(message)
        table = copy.deepcopy(self.table)
        try:
            for op in txn:
                table = _apply(table, op)
        except NftError as e:
            self.refused.append((txn, str(e)))
            raise
        self.table = table
        self.transactions.append(txn)

    async def list_table(self) -> dict[str, Any] | None:
        return None if self.table is None else _listing(self.table)

    async def list_counters(self) -> dict[str, Any] | None:
        return None if self.table is None else {"nftables": [_META, *_counter_items(self.table)]}

    def close(self) -> None:
        pass

    # --- tampering, as another program would --------------------------------------------------------

    def delete_table(self) -> None:
        self.table = None

    def flush_chain(self, name: str) -> None:
        self._held().chains[name].rules.clear()

    def delete_element(self, set_name: str, element: str) -> None:
        self._held().sets[set_name].elements.remove(element)

    def count(self, name: str, packets: int, nbytes: int) -> None:
        """Packets went through the rules counting into `name`."""
        held = self._held().counters
        p, b = held[name]
        held[name] = (p + packets, b + nbytes)

    def replace_rule(self, chain: str, index: int, text: str) -> None:
        """Put a rule of ours in place of another: it carries no comment (or not ours)."""
        self._held().chains[chain].rules[index] = FakeRule(text, None)

    def _held(self) -> FakeTable:
        assert self.table is not None, "no table to tamper with"
        return self.table


# --- applying operations -----------------------------------------------------------------------------


def _apply(table: FakeTable | None, op: ops.Op) -> FakeTable:
    if isinstance(op, ops.ReplaceTable):
        return _from_model(op.model, op.counts)
    if table is None:
        raise NftError(f"{ENOENT}: {ops.op_text(op)}")
    match op:
        case ops.AddSet(set=s):
            _add_set(table, s)
        case ops.DeleteElements(set=name, elements=elements):
            held = _need(table.sets, name, op)
            missing = [e for e in elements if e not in held.elements]
            if missing:
                raise NftError(f"element does not exist: {missing[0]}")
            held.elements -= set(elements)
        case ops.DeleteSet(name=name):
            _need(table.sets, name, op)
            if any(name in r.refs()[0] for c in table.chains.values() for r in c.rules):
                raise NftError(f"{EBUSY}: {ops.op_text(op)}")
            del table.sets[name]
        case ops.AddChain(name=name, hook=hook):
            held_chain = table.chains.get(name)
            if held_chain is None:
                table.chains[name] = FakeChain(_checked_hook(hook))
            elif held_chain.hook != hook:
                raise NftError(f"Could not process rule: Operation not supported: {ops.op_text(op)}")
        case ops.FlushChain(name=name):
            _need(table.chains, name, op).rules.clear()
        case ops.AddRule(chain=chain, rule=rule):
            target = _need(table.chains, chain, op)
            new = FakeRule(rule, rule_tag(rule))
            _check_refs(table, new, ops.op_text(op))
            target.rules.append(new)
        case ops.AddMapElements(map=name, elements=elements):
            held_map = _need(table.maps, name, op)
            for key, value in elements:
                if is_verdict_map(name) and value.split()[-1] not in table.chains:
                    raise NftError(f"{ENOENT}: {ops.op_text(op)}")
                if held_map.get(key, value) != value:
                    raise NftError(f"{EEXIST}: {ops.op_text(op)}")
                held_map[key] = value
        case ops.DeleteMapElements(map=name, keys=keys):
            held_map = _need(table.maps, name, op)
            for key in keys:
                if held_map.pop(key, None) is None:
                    raise NftError(f"{ENOENT}: {ops.op_text(op)}")
        case ops.DeleteChain(name=name):
            _need(table.chains, name, op)
            if name in _chain_users(table, exclude=name):
                raise NftError(f"{EBUSY}: {ops.op_text(op)}")
            del table.chains[name]
        case ops.AddCounter(name=name):
            table.counters.setdefault(name, (0, 0))
        case ops.DeleteCounter(name=name):
            _need(table.counters, name, op)
            if any(name in r.counters() for c in table.chains.values() for r in c.rules):
                raise NftError(f"{EBUSY}: {ops.op_text(op)}")
            del table.counters[name]
    return table


def _check_refs(table: FakeTable, rule: FakeRule, where: str) -> None:
    """A rule may only name sets, maps and chains that exist (nft resolves them when the rule is added)."""
    sets, chains = rule.refs()
    if (any(s not in table.sets and s not in table.maps for s in sets) or any(c not in table.chains for c in chains)
            or any(c not in table.counters for c in rule.counters())):
        raise NftError(f"{ENOENT}: {where}")


def _need(items: dict[str, Any], name: str, op: ops.Op) -> Any:
    if name not in items:
        raise NftError(f"{ENOENT}: {ops.op_text(op)}")
    return items[name]


def _chain_users(table: FakeTable, exclude: str) -> set[str]:
    """Chains some other chain's rule or some map element jumps or goes to."""
    used = {c for name, chain in table.chains.items() if name != exclude for r in chain.rules for c in r.refs()[1]}
    return used | {v.split()[-1] for n, m in table.maps.items() if is_verdict_map(n) for v in m.values()}


def _add_set(table: FakeTable, s: NftSet) -> None:
    held = table.sets.get(s.name)
    if held is None:
        held = table.sets[s.name] = FakeSet(s.type, s.interval)
    elif (held.type, held.interval) != (s.type, s.interval):
        raise NftError(f"{EEXIST}: set {s.name} is declared with another type or flags")
    if held.interval:
        _check_overlaps(s.name, held.elements, s.elements)
    held.elements |= s.elements


def _check_overlaps(name: str, held: set[str], new: frozenset[str]) -> None:
    nets = [ipaddress.ip_network(e, strict=False) for e in held]
    added: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for element in sorted(new - held):
        net = ipaddress.ip_network(element, strict=False)
        if any(net.version == n.version and net.overlaps(n) for n in (*nets, *added)):  # type: ignore[arg-type]
            raise NftError(f"{EEXIST}: interval {element} overlaps an element of set {name}")
        added.append(net)


def _from_model(model: TableModel, counts: Mapping[str, tuple[int, int]]) -> FakeTable:
    """The table a whole-table definition gives; refused like nft when it names what it does not define."""
    table = FakeTable(counters={n: counts.get(n, (0, 0)) for n in model.counters}, limits=dict(model.limits))
    for s in model.sets.values():
        _add_set(table, s)
    table.maps = {n: dict(m) for n, m in model.maps.items()}
    table.chains = {n: FakeChain(_checked_hook(c.hook), [FakeRule(r, rule_tag(r)) for r in c.rules])
                    for n, c in model.chains.items()}
    for name, chain in table.chains.items():
        for r in chain.rules:
            _check_refs(table, r, f"chain {name}: {r.text}")
    for name, m in table.maps.items():
        if is_verdict_map(name) and any(v.split()[-1] not in table.chains for v in m.values()):
            raise NftError(f"{ENOENT}: map {name} names a missing chain")
    return table


# --- listing, as `nft -j list table inet calico` -------------------------------------------------------


_META = {"metainfo": {"version": "1.0.6", "release_name": "fake", "json_schema_version": 1}}


def _counter_items(table: FakeTable) -> list[dict[str, Any]]:
    return [{"counter": {"family": FAMILY, "name": n, "table": TABLE, "handle": 0, "packets": p, "bytes": b}}
            for n, (p, b) in sorted(table.counters.items())]


def _listing(table: FakeTable) -> dict[str, Any]:
    head = {"family": FAMILY, "table": TABLE}
    items: list[dict[str, Any]] = [
        _META,
        {"table": {"family": FAMILY, "name": TABLE, "handle": 1}},
        *_counter_items(table),
        *({"limit": {"family": FAMILY, "name": n, "table": TABLE, "handle": 0, **_json_limit(spec)}}
          for n, spec in sorted(table.limits.items())),
    ]
    handle = 1
    for name, s in table.sets.items():
        handle += 1
        entry: dict[str, Any] = {"family": FAMILY, "name": name, "table": TABLE, "type": _json_type(s.type),
                                 "handle": handle}
        if s.interval:
            entry["flags"] = ["interval"]
        if s.elements:
            entry["elem"] = [_json_elem(e) for e in sorted(s.elements)]
        items.append({"set": entry})
    for name, m in table.maps.items():
        handle += 1
        key_type, _, value_type = map_type(name).partition(" : ")
        entry = {"family": FAMILY, "name": name, "table": TABLE, "type": _json_type(key_type), "handle": handle,
                 "map": value_type}
        if m:
            entry["elem"] = [[_json_elem(k), _json_map_value(v)] for k, v in sorted(m.items())]
        items.append({"map": entry})
    for name, chain in table.chains.items():
        handle += 1
        items.append({"chain": {**head, "name": name, "handle": handle, **_json_hook(chain.hook)}})
    for name, chain in table.chains.items():
        for r in chain.rules:
            handle += 1
            rule: dict[str, Any] = {**head, "chain": name, "handle": handle}
            if r.comment is not None:
                rule["comment"] = r.comment
            items.append({"rule": rule})
    return {"nftables": items}


def _json_type(typ: str) -> str | list[str]:
    parts = [p.strip() for p in typ.split(".")]
    return parts[0] if len(parts) == 1 else parts


def _json_map_value(value: str) -> Any:
    if " " in value:  # a verdict: "goto fw-cali1"
        return {value.split()[0]: {"target": value.split()[-1]}}
    return value


def _json_elem(element: str) -> Any:
    if " . " in element:
        parts = [p.strip() for p in element.split(" . ")]
        return {"concat": [int(p) if p.isdigit() else p for p in parts]}
    if "/" in element:
        addr, length = element.split("/")
        return {"prefix": {"addr": addr, "len": int(length)}}
    return element


def _json_limit(spec: str) -> dict[str, Any]:
    """"rate 1000/second burst 100 packets" as `nft -j` lists a limit object."""
    words = spec.split()
    rate, per = words[1].split("/")
    return {"rate": int(rate), "per": per, "burst": int(words[3])}


def _checked_hook(hook: str | None) -> str | None:
    if hook is not None and _HOOK.fullmatch(hook) is None:
        raise NftError(f"syntax error: the fake does not know the chain header {hook!r}")
    return hook


def _json_hook(hook: str | None) -> dict[str, Any]:
    m = _HOOK.fullmatch(hook or "")
    if m is None:
        return {}
    typ, point, base, sign, offset, policy = m.groups()
    prio = _PRIORITIES[base] if base in _PRIORITIES else int(base)
    if sign:
        prio += int(offset) if sign == "+" else -int(offset)
    return {"type": typ, "hook": point, "prio": prio, "policy": policy}

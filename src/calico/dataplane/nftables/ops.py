"""Typed nft operations on Calico's table: what one transaction does, before anyone writes it as text.

The planner (`diff`) builds a transaction as a list of these; the real transports (`transport`) write it as
one nft text (`to_text`) and run it atomically; the fake (`fake`) applies the same list to its in-memory table.
Each operation is one nft command on `table inet calico`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from calico.dataplane.nftables.model import NftSet, TableModel
from calico.dataplane.nftables.names import T, map_key
from calico.dataplane.nftables.text import map_decl, render_replace, set_decl, tagged


@dataclass(frozen=True, slots=True)
class ReplaceTable:
    """Replace the whole table with `model` (created if absent): `add table`, `delete table`, the definition.
    Its counters start from `counts` (name -> (packets, bytes)): what the replaced table had counted."""

    model: TableModel
    counts: Mapping[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AddCounter:
    """Declare a named counter (a rule identity); an existing one keeps its values."""

    name: str


@dataclass(frozen=True, slots=True)
class DeleteCounter:
    name: str  # no rule may count into it any more


@dataclass(frozen=True, slots=True)
class AddSet:
    """Declare `set` with its elements; on an existing set of the same type, add the elements. (Re-declaring adds
    elements without nft first fetching every element of every set in the table, as `add element` does.)"""

    set: NftSet


@dataclass(frozen=True, slots=True)
class DeleteElements:
    set: str
    elements: tuple[str, ...]  # each must be in the set


@dataclass(frozen=True, slots=True)
class DeleteSet:
    name: str  # no rule may use it any more


@dataclass(frozen=True, slots=True)
class AddChain:
    name: str
    hook: str | None = None  # a base chain's header


@dataclass(frozen=True, slots=True)
class FlushChain:
    name: str


@dataclass(frozen=True, slots=True)
class AddRule:
    chain: str
    rule: str  # without its comment: it is written with its tag (`text.tagged`)


@dataclass(frozen=True, slots=True)
class AddMapElements:
    map: str
    # (interface name, verdict such as "goto fw-cali1"); NAT maps: (address, address)
    elements: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class DeleteMapElements:
    map: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeleteChain:
    name: str  # nothing may jump to it any more


Op = (ReplaceTable | AddSet | DeleteElements | DeleteSet | AddChain | FlushChain | AddRule | AddMapElements
      | DeleteMapElements | DeleteChain | AddCounter | DeleteCounter)


def _elements(items: Sequence[str]) -> str:
    return "{ " + ", ".join(items) + " }"


def op_text(op: Op) -> str:
    """One operation as the nft command(s) `nft -f` reads, without a final newline."""
    match op:
        case ReplaceTable(model=model, counts=counts):
            return render_replace(model, counts).rstrip("\n")
        case AddCounter(name=name):
            return f"add counter {T} {name}"
        case DeleteCounter(name=name):
            return f"delete counter {T} {name}"
        case AddSet(set=s):
            return f"add set {T} {set_decl(s).removeprefix('set ')}"
        case DeleteElements(set=name, elements=elements):
            return f"delete element {T} {name} {_elements(sorted(elements))}"
        case DeleteSet(name=name):
            return f"delete set {T} {name}"
        case AddChain(name=name, hook=hook):
            return f"add chain {T} {name}" + (f" {{ {hook} }}" if hook else "")
        case FlushChain(name=name):
            return f"flush chain {T} {name}"
        case AddRule(chain=chain, rule=rule):
            return f"add rule {T} {chain} {tagged(rule)}"
        case AddMapElements(map=name, elements=elements):
            return f"add map {T} {map_decl(name, dict(elements)).removeprefix('map ')}"
        case DeleteMapElements(map=name, keys=keys):
            return f"delete element {T} {name} {_elements([map_key(name, k) for k in keys])}"
        case DeleteChain(name=name):
            return f"delete chain {T} {name}"
    raise TypeError(f"not an nft operation: {op!r}")


def to_text(ops: Sequence[Op]) -> str:
    """A transaction as one nft text ("" for none): what `nft -f -` and libnftables run atomically."""
    return "".join(op_text(op) + "\n" for op in ops)

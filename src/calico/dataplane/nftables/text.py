"""nft text for Calico's table: declarations of sets, maps, counters and chains, and the whole-table replacement.

In: `NftSet`s, maps, counter names (with the values a replacement carries over) and a `TableModel`. Out: the
text `nft -f` reads. Every rule carries its comment tag (`names.rule_tag`), so read-back recognises it.
Deterministic: equal models (and values) give equal text. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

from calico.dataplane.nftables.model import NftSet, TableModel
from calico.dataplane.nftables.names import FAMILY, TABLE, map_key, map_type, rule_tag


def tagged(rule: str) -> str:
    return f'{rule} comment "{rule_tag(rule)}"'


def set_decl(s: NftSet, with_elements: bool = True) -> str:
    flags = " flags interval;" if s.interval else ""
    elems = f" elements = {{ {', '.join(sorted(s.elements))} }};" if with_elements and s.elements else ""
    return f"set {s.name} {{ type {s.type};{flags}{elems} }}"


def map_decl(name: str, elements: dict[str, str]) -> str:
    elems = ", ".join(f"{map_key(name, k)} : {v}" for k, v in sorted(elements.items()))
    body = f" elements = {{ {elems} }};" if elems else ""
    return f"map {name} {{ type {map_type(name)};{body} }}"


def counter_decl(name: str, value: tuple[int, int] | None = None) -> str:
    """A named counter; `value` (packets, bytes) starts it there (what a whole-table replacement carries)."""
    packets, nbytes = value or (0, 0)
    return f"counter {name} {{ packets {packets} bytes {nbytes}; }}"


def _chain_order(model: TableModel) -> list[str]:
    # Deterministic: non-base chains sorted, then base chains; nft resolves jumps within one file anyway.
    base = [c for c in model.chains if model.chains[c].hook]
    return sorted(c for c in model.chains if not model.chains[c].hook) + sorted(base)


def render_text(model: TableModel, counts: Mapping[str, tuple[int, int]] | None = None) -> str:
    """The table definition alone: `table inet calico { ... }`; counters start at `counts` (else 0)."""
    counts = counts or {}
    lines = [f"table {FAMILY} {TABLE} {{"]
    for name in sorted(model.counters):
        lines.append("\t" + counter_decl(name, counts.get(name)))
    for name in sorted(model.limits):
        lines.append(f"\tlimit {name} {{ {model.limits[name]}; }}")
    for name in sorted(model.sets):
        lines.append("\t" + set_decl(model.sets[name]))
    for name in sorted(model.maps):
        lines.append("\t" + map_decl(name, model.maps[name]))
    for name in _chain_order(model):
        chain = model.chains[name]
        lines.append(f"\tchain {name} {{")
        if chain.hook:
            lines.append(f"\t\t{chain.hook}")
        lines.extend(f"\t\t{tagged(r)}" for r in chain.rules)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_replace(model: TableModel, counts: Mapping[str, tuple[int, int]] | None = None) -> str:
    """One atomic transaction replacing the whole table: add (so delete cannot fail), delete, define. The
    counters start from `counts` (what the replaced table had counted), so they stay monotonic."""
    return f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n" + render_text(model, counts)

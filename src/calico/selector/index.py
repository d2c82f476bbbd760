"""Incremental selector/label matching: selector and label updates in, match start/stop callbacks out.

`LabelIndex` keeps, for every selector, the set of items (e.g. endpoints) whose labels it matches,
and reports each change through `on_match_start(sel_id, item_id)` / `on_match_stop(sel_id,
item_id)`: exactly once per transition, never for updates that change no match. Ids are any
hashables. Callbacks run synchronously and must not call back into the index.

Effective labels of an item: its parents' labels (e.g. profiles, namespace) merged so that the
item's own labels win over any parent's, and an earlier parent in its `parents` list wins over a
later one. A parent that is not (yet) known contributes no labels.

How the work stays proportional to the change. Each selector gets a *hook*: a set of (key, value)
or (key, any-value) pairs of which any matching item must have at least one, taken from its tree:
`k == "v"` gives {(k, v)}, `k in {...}` one pair per value, `has(k)` and the string tests (k, any),
`&&` the cheapest operand's hooks, `||` the union if every operand has one. Selectors without one
(`!has(x)`, `k != "v"`, `all()`, an `||` with such an operand) are *unhooked*. Also, a selector's
result depends only on the labels at the keys it reads (`Selector.label_keys()`).

- Item label change (L labels, C changed keys): evaluates selectors hooked on the item's new
  labels, the item's current matches and unhooked selectors reading a changed key, skipping those
  that read no changed key. Cost O(L + C + those candidates), independent of the total number of
  selectors. A new item also evaluates every unhooked selector.
- Selector add/change: evaluates the items carrying one of its hooks plus the items it matched
  before; an unhooked selector evaluates every item. Among `&&` operands the hook with the least
  work (items plus selectors already on it) at the time of the update is chosen.
- Parent label change: re-evaluates only that parent's items, each as an item label change.
- Deletions cost O(matches + labels).

`evaluations` counts selector evaluations, for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

from calico.selector.ast import (
    All,
    And,
    Contains,
    EndsWith,
    Equals,
    Global,
    Has,
    In,
    Node,
    Not,
    NotEquals,
    NotIn,
    Or,
    StartsWith,
)
from calico.selector.core import Selector

SelId = Hashable
ItemId = Hashable
ParentId = Hashable
MatchCallback = Callable[[SelId, ItemId], None]
# (key, value) for "has this value", (key, None) for "has this key".
Hook = tuple[str, str | None]

_NO_LABELS: Mapping[str, str] = {}


class _SelRec:
    __slots__ = ("evaluate", "hooks", "keys", "matches", "selector")

    def __init__(self, selector: Selector, hooks: frozenset[Hook] | None) -> None:
        self.selector = selector
        self.evaluate = selector.evaluate
        self.keys = selector.label_keys()
        self.hooks = hooks
        self.matches: set[ItemId] = set()


class _ItemRec:
    __slots__ = ("labels", "matches", "own", "parents")

    def __init__(self, own: dict[str, str], parents: tuple[ParentId, ...]) -> None:
        self.own = own
        self.parents = parents
        self.labels: dict[str, str] | None = None  # effective labels, None until first indexed
        self.matches: set[SelId] = set()


class LabelIndex:
    """Keeps selector-to-item matches up to date; see the module docstring for semantics and cost."""

    def __init__(self, on_match_start: MatchCallback, on_match_stop: MatchCallback) -> None:
        self._on_start = on_match_start
        self._on_stop = on_match_stop
        self._sels: dict[SelId, _SelRec] = {}
        self._items: dict[ItemId, _ItemRec] = {}
        self._parent_labels: dict[ParentId, dict[str, str]] = {}
        self._parent_items: dict[ParentId, set[ItemId]] = {}
        self._sels_by_hook: dict[Hook, set[SelId]] = {}
        self._items_by_hook: dict[Hook, set[ItemId]] = {}
        self._unhooked: set[SelId] = set()
        self._unhooked_by_key: dict[str, set[SelId]] = {}
        self.evaluations = 0

    # ---- selectors -------------------------------------------------------------------------

    def update_selector(self, sel_id: SelId, selector: Selector) -> None:
        """Add or replace a selector; fires start/stop for every item whose match changes."""
        if not isinstance(selector, Selector):
            raise TypeError(f"expected a parsed Selector, not {type(selector).__name__}")
        old = self._sels.get(sel_id)
        if old is not None:
            if old.selector == selector:
                return
            self._unregister(sel_id, old)
        rec = _SelRec(selector, self._choose_hooks(selector.root))
        self._register(sel_id, rec)
        previous = old.matches if old is not None else set()
        if rec.hooks is None:
            candidates: set[ItemId] | dict[ItemId, _ItemRec] = self._items
        else:
            candidates = set(previous)
            for hook in rec.hooks:
                candidates.update(self._items_by_hook.get(hook, ()))
        items = self._items
        evaluate = rec.evaluate
        matches = rec.matches
        for item_id in candidates:
            if evaluate(items[item_id].labels):  # type: ignore[arg-type]
                matches.add(item_id)
        self.evaluations += len(candidates)
        for item_id in previous - matches:
            items[item_id].matches.discard(sel_id)
            self._on_stop(sel_id, item_id)
        for item_id in matches - previous:
            items[item_id].matches.add(sel_id)
            self._on_start(sel_id, item_id)

    def delete_selector(self, sel_id: SelId) -> None:
        """Remove a selector (unknown ids are ignored); fires stop for each item it matched."""
        rec = self._sels.pop(sel_id, None)
        if rec is None:
            return
        self._unregister(sel_id, rec)
        for item_id in list(rec.matches):
            rec.matches.discard(item_id)
            self._items[item_id].matches.discard(sel_id)
            self._on_stop(sel_id, item_id)

    def _register(self, sel_id: SelId, rec: _SelRec) -> None:
        self._sels[sel_id] = rec
        if rec.hooks is None:
            self._unhooked.add(sel_id)
            for key in rec.keys:
                self._unhooked_by_key.setdefault(key, set()).add(sel_id)
        else:
            for hook in rec.hooks:
                self._sels_by_hook.setdefault(hook, set()).add(sel_id)

    def _unregister(self, sel_id: SelId, rec: _SelRec) -> None:
        if rec.hooks is None:
            self._unhooked.discard(sel_id)
            for key in rec.keys:
                _discard(self._unhooked_by_key, key, sel_id)
        else:
            for hook in rec.hooks:
                _discard(self._sels_by_hook, hook, sel_id)

    def _choose_hooks(self, node: Node) -> frozenset[Hook] | None:
        found = self._hooks(node)
        return None if found is None else found[0]

    def _hooks(self, node: Node) -> tuple[frozenset[Hook], tuple[int, int, int]] | None:
        """A hook set for `node` and its estimated work, or None if it has no necessary hook."""
        kind = type(node)
        hooks: frozenset[Hook]
        if kind is Equals:
            hooks = frozenset({(node.key, node.value)})  # type: ignore[attr-defined]
        elif kind is In:
            hooks = frozenset((node.key, v) for v in node.values)  # type: ignore[attr-defined]
        elif kind in (Has, Contains, StartsWith, EndsWith):
            hooks = frozenset({(node.key, None)})  # type: ignore[attr-defined]
        elif kind is Not:
            inner = node.operand  # type: ignore[attr-defined]
            # Double negatives of hookable leaves are hookable too.
            if type(inner) is NotEquals:
                return self._hooks(Equals(inner.key, inner.value))
            if type(inner) is NotIn:
                return self._hooks(In(inner.key, inner.values))
            if type(inner) is Not:
                return self._hooks(inner.operand)
            return None
        elif kind is And:
            best = None
            for operand in node.operands:  # type: ignore[attr-defined]
                found = self._hooks(operand)
                if found is not None and (best is None or found[1] < best[1]):
                    best = found
            return best
        elif kind is Or:
            union: set[Hook] = set()
            for operand in node.operands:  # type: ignore[attr-defined]
                found = self._hooks(operand)
                if found is None:
                    return None
                union.update(found[0])
            hooks = frozenset(union)
        else:
            assert kind in (All, Global, NotEquals, NotIn), kind
            return None
        work = sum(len(self._items_by_hook.get(h, ())) + len(self._sels_by_hook.get(h, ())) for h in hooks)
        # Ties (e.g. an empty index) go to value hooks over key hooks, then to fewer hooks.
        key_hooks = sum(1 for h in hooks if h[1] is None)
        return hooks, (work, key_hooks, len(hooks))

    # ---- items -----------------------------------------------------------------------------

    def update_labels(self, item_id: ItemId, labels: Mapping[str, str], parents: Sequence[ParentId] = ()) -> None:
        """Add or replace an item's own labels and parent list; fires start/stop for changed matches."""
        if isinstance(parents, str):
            raise TypeError("parents must be a sequence of parent ids, not a string")
        own = dict(labels)
        parent_tuple = tuple(parents)
        rec = self._items.get(item_id)
        if rec is None:
            rec = _ItemRec(own, parent_tuple)
            self._items[item_id] = rec
            self._link_parents(item_id, (), parent_tuple)
        else:
            if rec.own == own and rec.parents == parent_tuple:
                return
            if rec.parents != parent_tuple:
                self._link_parents(item_id, rec.parents, parent_tuple)
            rec.own = own
            rec.parents = parent_tuple
        self._relabel(item_id, rec, self._effective(own, parent_tuple))

    def delete_labels(self, item_id: ItemId) -> None:
        """Remove an item (unknown ids are ignored); fires stop for each selector matching it."""
        rec = self._items.pop(item_id, None)
        if rec is None:
            return
        self._link_parents(item_id, rec.parents, ())
        for key, value in (rec.labels or _NO_LABELS).items():
            _discard(self._items_by_hook, (key, value), item_id)
            _discard(self._items_by_hook, (key, None), item_id)
        for sel_id in list(rec.matches):
            rec.matches.discard(sel_id)
            self._sels[sel_id].matches.discard(item_id)
            self._on_stop(sel_id, item_id)

    def update_parent_labels(self, parent_id: ParentId, labels: Mapping[str, str]) -> None:
        """Set a parent's labels; re-evaluates only the items that list this parent."""
        new = dict(labels)
        old = self._parent_labels.get(parent_id)
        if old is not None and old == new:
            return
        self._parent_labels[parent_id] = new
        self._refresh_parent(parent_id)

    def delete_parent_labels(self, parent_id: ParentId) -> None:
        """Forget a parent's labels; its items keep listing it but inherit nothing from it."""
        if self._parent_labels.pop(parent_id, None) is not None:
            self._refresh_parent(parent_id)

    def _refresh_parent(self, parent_id: ParentId) -> None:
        for item_id in list(self._parent_items.get(parent_id, ())):
            rec = self._items[item_id]
            self._relabel(item_id, rec, self._effective(rec.own, rec.parents))

    def _link_parents(self, item_id: ItemId, old: tuple[ParentId, ...], new: tuple[ParentId, ...]) -> None:
        if not old:  # a new item (start of day: every item): no set arithmetic needed
            parent_items = self._parent_items
            for parent_id in new:
                members = parent_items.get(parent_id)
                if members is None:
                    parent_items[parent_id] = {item_id}
                else:
                    members.add(item_id)
            return
        for parent_id in set(old).difference(new):
            _discard(self._parent_items, parent_id, item_id)
        for parent_id in set(new).difference(old):
            self._parent_items.setdefault(parent_id, set()).add(item_id)

    def _effective(self, own: dict[str, str], parents: tuple[ParentId, ...]) -> dict[str, str]:
        """The merged labels; `own` itself (never mutated) when no parent has labels, saving a dict per item."""
        merged: dict[str, str] | None = None
        parent_labels = self._parent_labels
        # Apply the lowest-priority source first so higher-priority ones overwrite it.
        for parent_id in reversed(parents):
            labels = parent_labels.get(parent_id)
            if labels:
                if merged is None:
                    merged = dict(labels)
                else:
                    merged.update(labels)
        if merged is None:
            return own
        merged.update(own)
        return merged

    def _relabel(self, item_id: ItemId, rec: _ItemRec, new: dict[str, str]) -> None:
        old = rec.labels
        if old == new:
            return
        rec.labels = new
        items_by_hook = self._items_by_hook
        sels = self._sels
        sels_by_hook = self._sels_by_hook
        candidates: set[SelId] = set()
        changed: set[str] | None
        if old is None:
            changed = None
            # Not setdefault(h, set()): that builds a throwaway set per label of each new item (start of day).
            for key, value in new.items():
                for hook in ((key, value), (key, None)):
                    members = items_by_hook.get(hook)
                    if members is None:
                        items_by_hook[hook] = {item_id}
                    else:
                        members.add(item_id)
            candidates.update(self._unhooked)
        else:
            changed = {k for k, v in old.items() if new.get(k) != v}
            changed.update(k for k in new if k not in old)
            unhooked_by_key = self._unhooked_by_key
            for key in changed:
                old_value = old.get(key)
                new_value = new.get(key)
                if old_value is not None:
                    _discard(items_by_hook, (key, old_value), item_id)
                    if new_value is None:
                        _discard(items_by_hook, (key, None), item_id)
                if new_value is not None:
                    items_by_hook.setdefault((key, new_value), set()).add(item_id)
                    if old_value is None:
                        items_by_hook.setdefault((key, None), set()).add(item_id)
                found = unhooked_by_key.get(key)
                if found:
                    candidates.update(found)
            # Current matches: some may stop matching.
            candidates.update(rec.matches)
        if sels_by_hook:  # empty while the snapshot's items arrive before any selector
            for key, value in new.items():
                found = sels_by_hook.get((key, value))
                if found:
                    candidates.update(found)
                found = sels_by_hook.get((key, None))
                if found:
                    candidates.update(found)
        if not candidates:
            return
        matches = rec.matches
        evaluated = 0
        for sel_id in candidates:
            srec = sels[sel_id]
            # A selector reading none of the changed keys cannot change its result.
            if changed is not None and changed.isdisjoint(srec.keys):
                continue
            evaluated += 1
            now = srec.evaluate(new)
            if now is (sel_id in matches):
                continue
            if now:
                matches.add(sel_id)
                srec.matches.add(item_id)
                self._on_start(sel_id, item_id)
            else:
                matches.discard(sel_id)
                srec.matches.discard(item_id)
                self._on_stop(sel_id, item_id)
        self.evaluations += evaluated

    # ---- queries ---------------------------------------------------------------------------

    def matching_items(self, sel_id: SelId) -> frozenset[ItemId]:
        """Items the selector currently matches (empty for an unknown selector)."""
        rec = self._sels.get(sel_id)
        return frozenset(rec.matches) if rec is not None else frozenset()

    def matching_selectors(self, item_id: ItemId) -> frozenset[SelId]:
        """Selectors currently matching the item (empty for an unknown item)."""
        rec = self._items.get(item_id)
        return frozenset(rec.matches) if rec is not None else frozenset()

    def effective_labels(self, item_id: ItemId) -> Mapping[str, str] | None:
        """The merged labels selectors see for the item, or None for an unknown item (a copy)."""
        rec = self._items.get(item_id)
        return None if rec is None or rec.labels is None else dict(rec.labels)

    def selector_ids(self) -> frozenset[SelId]:
        return frozenset(self._sels)

    def item_ids(self) -> frozenset[ItemId]:
        return frozenset(self._items)


def _discard(table: dict, key: Hashable, member: Hashable) -> None:  # type: ignore[type-arg]
    """Remove `member` from `table[key]`, dropping the entry once empty so memory tracks live data."""
    members = table.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del table[key]

"""LabelIndex: correctness against a brute-force oracle, exact callbacks, inheritance, and cost."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from calico.selector import Selector, parse
from calico.selector.index import LabelIndex

Event = tuple[str, Hashable, Hashable]


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def start(self, sel_id: Hashable, item_id: Hashable) -> None:
        self.events.append(("start", sel_id, item_id))

    def stop(self, sel_id: Hashable, item_id: Hashable) -> None:
        self.events.append(("stop", sel_id, item_id))

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events


def make_index() -> tuple[LabelIndex, Recorder]:
    rec = Recorder()
    return LabelIndex(rec.start, rec.stop), rec


# ---- basic behaviour ---------------------------------------------------------------------------


def test_selector_then_items() -> None:
    idx, rec = make_index()
    idx.update_selector("s", parse('app == "web"'))
    idx.update_labels("e1", {"app": "web"})
    idx.update_labels("e2", {"app": "db"})
    assert rec.take() == [("start", "s", "e1")]
    assert idx.matching_items("s") == {"e1"}
    assert idx.matching_selectors("e1") == {"s"}
    assert idx.matching_selectors("e2") == frozenset()
    idx.update_labels("e2", {"app": "web"})
    idx.update_labels("e1", {"app": "db"})
    assert rec.take() == [("start", "s", "e2"), ("stop", "s", "e1")]
    idx.delete_labels("e2")
    assert rec.take() == [("stop", "s", "e2")]
    assert idx.matching_items("s") == frozenset()


def test_items_then_selector_and_replacement() -> None:
    idx, rec = make_index()
    idx.update_labels("e1", {"app": "web", "tier": "a"})
    idx.update_labels("e2", {"app": "web", "tier": "b"})
    idx.update_labels("e3", {"app": "db"})
    idx.update_selector("s", parse('app == "web"'))
    assert sorted(rec.take()) == [("start", "s", "e1"), ("start", "s", "e2")]
    idx.update_selector("s", parse('tier == "b" || app == "db"'))
    assert sorted(rec.take()) == [("start", "s", "e3"), ("stop", "s", "e1")]
    assert idx.matching_items("s") == {"e2", "e3"}
    idx.delete_selector("s")
    assert sorted(rec.take()) == [("stop", "s", "e2"), ("stop", "s", "e3")]
    assert idx.matching_selectors("e2") == frozenset()
    assert idx.matching_items("s") == frozenset()


def test_no_callbacks_for_no_op_updates() -> None:
    idx, rec = make_index()
    idx.update_selector("s", parse('app == "web"'))
    idx.update_labels("e", {"app": "web", "v": "1"})
    rec.take()
    idx.update_labels("e", {"app": "web", "v": "1"})
    idx.update_labels("e", {"app": "web", "v": "2"})  # changes labels, not the match
    idx.update_selector("s", parse("app=='web'"))  # same selector, other spelling
    idx.update_selector("s2", parse('app == "db"'))  # matches nothing
    idx.delete_selector("missing")
    idx.delete_labels("missing")
    idx.delete_parent_labels("missing")
    idx.update_parent_labels("p", {"x": "y"})  # no items use it
    assert rec.take() == []


def test_unindexable_selectors() -> None:
    idx, rec = make_index()
    idx.update_selector("none", parse("!has(deprecated)"))
    idx.update_selector("all", parse("all()"))
    idx.update_selector("ne", parse('app != "web"'))
    idx.update_labels("e", {"app": "web"})
    assert sorted(rec.take()) == [("start", "all", "e"), ("start", "none", "e")]
    idx.update_labels("e", {"app": "web", "deprecated": "yes"})
    assert rec.take() == [("stop", "none", "e")]
    idx.update_labels("e", {"app": "db", "deprecated": "yes"})
    assert rec.take() == [("start", "ne", "e")]


def test_in_with_empty_set_and_or_selectors() -> None:
    idx, _ = make_index()
    idx.update_selector("empty", parse("app in {}"))
    idx.update_selector("or", parse('app == "a" || has(b)'))
    idx.update_selector("in", parse('app in {"a", "c"} && !has(x)'))
    for i, labels in enumerate([{"app": "a"}, {"b": ""}, {"app": "c"}, {"app": "c", "x": "1"}, {}]):
        idx.update_labels(i, labels)
    assert idx.matching_items("empty") == frozenset()
    assert idx.matching_items("or") == {0, 1}
    assert idx.matching_items("in") == {0, 2}


def test_matching_sets_are_snapshots() -> None:
    idx, _ = make_index()
    idx.update_selector("s", parse("has(a)"))
    idx.update_labels("e", {"a": "1"})
    items = idx.matching_items("s")
    idx.delete_labels("e")
    assert items == {"e"}
    assert isinstance(items, frozenset)


def test_parents_must_be_a_sequence_of_ids() -> None:
    idx, _ = make_index()
    with pytest.raises(TypeError):
        idx.update_labels("e", {}, parents="profile")
    with pytest.raises(TypeError):
        idx.update_selector("s", 'app == "x"')  # type: ignore[arg-type]


# ---- parent inheritance ------------------------------------------------------------------------


def test_parent_labels_inherited_with_precedence() -> None:
    idx, rec = make_index()
    idx.update_parent_labels("ns", {"env": "prod", "team": "ns-team"})
    idx.update_parent_labels("prof", {"team": "prof-team", "zone": "z1"})
    idx.update_labels("e", {"app": "web", "zone": "own"}, parents=["prof", "ns"])
    # Own beats every parent; the earlier parent (prof) beats the later one (ns).
    assert idx.effective_labels("e") == {"env": "prod", "team": "prof-team", "zone": "own", "app": "web"}
    idx.update_selector("prod", parse('env == "prod"'))
    idx.update_selector("team", parse('team == "ns-team"'))
    assert rec.take() == [("start", "prod", "e")]
    idx.update_labels("e", {"app": "web"}, parents=["ns", "prof"])
    assert rec.take() == [("start", "team", "e")]
    assert idx.effective_labels("e") == {"env": "prod", "team": "ns-team", "zone": "z1", "app": "web"}


def test_parent_update_and_delete_reach_only_its_items() -> None:
    idx, rec = make_index()
    idx.update_selector("prod", parse('env == "prod"'))
    idx.update_labels("e1", {"app": "a"}, parents=["ns1"])  # parent not known yet
    idx.update_labels("e2", {"app": "b"}, parents=["ns2"])
    assert rec.take() == []
    idx.update_parent_labels("ns1", {"env": "prod"})
    assert rec.take() == [("start", "prod", "e1")]
    before = idx.evaluations
    idx.update_parent_labels("ns2", {"env": "prod"})
    assert idx.evaluations - before == 1  # only e2; e1 (other parent) untouched
    assert rec.take() == [("start", "prod", "e2")]
    before = idx.evaluations
    idx.update_parent_labels("ns2", {"env": "dev"})
    assert idx.evaluations - before == 1  # the current match, to see it stop
    assert rec.take() == [("stop", "prod", "e2")]
    idx.update_parent_labels("ns1", {"env": "prod"})  # no-op
    assert rec.take() == []
    idx.delete_parent_labels("ns1")
    assert rec.take() == [("stop", "prod", "e1")]
    idx.update_parent_labels("ns1", {"env": "prod"})
    assert rec.take() == [("start", "prod", "e1")]
    idx.update_labels("e1", {"app": "a"})  # drop the parent link
    assert rec.take() == [("stop", "prod", "e1")]
    idx.update_parent_labels("ns1", {"env": "prod", "x": "y"})
    assert rec.take() == []
    idx.update_labels("e1", {"app": "a", "env": "prod"})
    assert rec.take() == [("start", "prod", "e1")]


def test_own_label_shadowing_parent_is_not_a_change() -> None:
    idx, rec = make_index()
    idx.update_parent_labels("p", {"env": "prod"})
    idx.update_selector("s", parse('env == "prod"'))
    idx.update_labels("e", {}, parents=["p"])
    assert rec.take() == [("start", "s", "e")]
    before = idx.evaluations
    idx.update_labels("e", {"env": "prod"}, parents=["p"])  # same effective labels
    assert rec.take() == []
    assert idx.evaluations == before


# ---- cost: proportional to the change ----------------------------------------------------------


def test_item_update_evaluates_few_selectors() -> None:
    idx, rec = make_index()
    for i in range(1000):
        idx.update_selector(i, parse(f'app == "x{i}"'))
    before = idx.evaluations
    idx.update_labels("e", {"app": "x5", "role": "r"})
    assert idx.evaluations - before <= 2
    before = idx.evaluations
    idx.update_labels("e", {"app": "x7", "role": "r"})
    assert idx.evaluations - before <= 3  # the old match, the new candidate
    before = idx.evaluations
    idx.update_labels("e", {"app": "x7", "role": "q"})  # no selector reads role
    assert idx.evaluations == before
    assert rec.take() == [("start", 5, "e"), ("stop", 5, "e"), ("start", 7, "e")]


def test_unhooked_selectors_evaluated_only_when_their_keys_change() -> None:
    idx, _ = make_index()
    for i in range(100):
        idx.update_selector(("neg", i), parse(f"!has(k{i})"))
    idx.update_labels("e", {"app": "a"})  # a new item meets every unhooked selector once
    assert idx.evaluations == 100
    before = idx.evaluations
    idx.update_labels("e", {"app": "b"})
    assert idx.evaluations == before
    idx.update_labels("e", {"app": "b", "k3": ""})
    assert idx.evaluations - before == 1
    assert ("neg", 3) not in idx.matching_selectors("e")


def test_selector_update_evaluates_only_hooked_items() -> None:
    idx, _ = make_index()
    for i in range(1000):
        idx.update_labels(i, {"app": f"x{i}", "role": "db" if i % 2 else "web"})
    before = idx.evaluations
    idx.update_selector("s", parse('role == "db" && app == "x5"'))  # picks the rarer app hook
    assert idx.evaluations - before == 1
    assert idx.matching_items("s") == {5}
    before = idx.evaluations
    idx.update_selector("t", parse('app in {"x1", "x2", "x3"}'))
    assert idx.evaluations - before == 3
    before = idx.evaluations
    idx.update_selector("u", parse("!has(app)"))  # unhooked: every item
    assert idx.evaluations - before == 1000


# ---- brute-force oracle under random operation sequences ---------------------------------------

KEYS = ["app", "role", "env", "x"]
VALS = ["a", "b", "c"]
SELECTORS = [
    'app == "a"',
    'app == "a" && role == "b"',
    'role == "b" && app in {"a", "c"}',
    'app in {"b", "c"}',
    "has(env)",
    "!has(x)",
    'app != "a"',
    'env not in {"a"}',
    "all()",
    "global()",
    'app == "a" || env == "b"',
    'app == "a" || !has(role)',
    'role starts with "b" && x contains "a"',
    '!(app != "c")',
    '!!role in {"a"}',
    'app == "b" && (has(x) || env ends with "c")',
    "app in {}",
]
SEL_IDS = ["s0", "s1", "s2", "s3"]
ITEM_IDS = [0, 1, 2, 3, 4]
PARENT_IDS = ["p0", "p1", "p2"]

labels_st = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALS), max_size=4)


class IndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.idx, self.rec = make_index()
        self.sels: dict[str, Selector] = {}
        self.items: dict[int, tuple[dict[str, str], tuple[str, ...]]] = {}
        self.parents: dict[str, dict[str, str]] = {}
        self.expected = self._matches()

    def _effective(self, item: int) -> dict[str, str]:
        own, parents = self.items[item]
        merged: dict[str, str] = {}
        for p in parents[::-1]:
            merged.update(self.parents.get(p, {}))
        merged.update(own)
        return merged

    def _matches(self) -> set[tuple[str, int]]:
        return {(s, i) for s, sel in self.sels.items() for i in self.items if sel.evaluate(self._effective(i))}

    def _check_events(self) -> None:
        new = self._matches()
        events = Counter(self.rec.take())
        want = Counter({("start", s, i): 1 for s, i in new - self.expected})
        want.update({("stop", s, i): 1 for s, i in self.expected - new})
        assert events == want
        self.expected = new

    @rule(sel_id=st.sampled_from(SEL_IDS), text=st.sampled_from(SELECTORS))
    def update_selector(self, sel_id: str, text: str) -> None:
        self.sels[sel_id] = parse(text)
        self.idx.update_selector(sel_id, parse(text))
        self._check_events()

    @rule(sel_id=st.sampled_from(SEL_IDS))
    def delete_selector(self, sel_id: str) -> None:
        self.sels.pop(sel_id, None)
        self.idx.delete_selector(sel_id)
        self._check_events()

    @rule(
        item=st.sampled_from(ITEM_IDS),
        labels=labels_st,
        parents=st.lists(st.sampled_from(PARENT_IDS), max_size=3),
    )
    def update_labels(self, item: int, labels: dict[str, str], parents: list[str]) -> None:
        self.items[item] = (dict(labels), tuple(parents))
        self.idx.update_labels(item, labels, parents)
        self._check_events()

    @rule(item=st.sampled_from(ITEM_IDS))
    def delete_labels(self, item: int) -> None:
        self.items.pop(item, None)
        self.idx.delete_labels(item)
        self._check_events()

    @rule(parent=st.sampled_from(PARENT_IDS), labels=labels_st)
    def update_parent(self, parent: str, labels: dict[str, str]) -> None:
        self.parents[parent] = dict(labels)
        self.idx.update_parent_labels(parent, labels)
        self._check_events()

    @rule(parent=st.sampled_from(PARENT_IDS))
    def delete_parent(self, parent: str) -> None:
        self.parents.pop(parent, None)
        self.idx.delete_parent_labels(parent)
        self._check_events()

    @invariant()
    def queries_agree(self) -> None:
        for s in SEL_IDS:
            assert self.idx.matching_items(s) == {i for t, i in self.expected if t == s}
        for i in ITEM_IDS:
            assert self.idx.matching_selectors(i) == {t for t, j in self.expected if j == i}
            if i in self.items:
                assert self.idx.effective_labels(i) == self._effective(i)
            else:
                assert self.idx.effective_labels(i) is None

    def teardown(self) -> None:
        # Tearing everything down must stop every match and leave no index residue.
        for s in SEL_IDS:
            self.idx.delete_selector(s)
        for i in ITEM_IDS:
            self.idx.delete_labels(i)
        self.sels.clear()
        self.items.clear()
        self._check_events()
        assert not self.idx._items_by_hook
        assert not self.idx._sels_by_hook
        assert not self.idx._unhooked_by_key
        assert not self.idx._parent_items


IndexMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestIndexMachine = IndexMachine.TestCase

"""IP set membership: every endpoint and network set in the cluster in; IP set contents and deltas out.

Enters:
  - items (`update_item` / `remove_item`): every WorkloadEndpoint and HostEndpoint of *every* node, and
    every NetworkSet / GlobalNetworkSet, each with its effective labels (own labels plus parents), its
    addresses (`cidrs`) and named ports;
  - parent labels (`update_parent`): profiles' `labelsToApply` and namespaces' `pcns.` labels;
  - wanted sets (`add_set` / `remove_set`, from the rule scanner): an `IPSetSpec` per distinct selector,
    named port (protocol, name, selector) or list of nets that active rules use.
Leaves (`flush`): `IPSetUpdate` for sets new since the last flush (full membership), `IPSetDelta` for
changed ones, `IPSetRemove` for sets no longer wanted that the dataplane had; no event for no-op changes.

Matching is done by one `LabelIndex` whose selectors are the distinct selectors of wanted sets (several sets
may hang off one selector: its plain set and its named-port sets), so an item update costs only the
selectors it can affect. Members are reference counted: two endpoints with the same address, or two
network sets with overlapping nets, keep a member until the last of them goes.

Released selector sets are *parked* rather than dropped: they leave the dataplane (IPSetRemove) but stay
indexed, with up-to-date membership, until `park_limit` newer ones push them out (oldest first). A policy
whose only local endpoint flaps in and out of its selector thus costs no re-evaluation of the cluster
when it comes back; the dataplane then gets the set's full membership again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence

from calico.calculation.events import IPSetDelta, IPSetRemove, IPSetUpdate
from calico.calculation.types import IPSetSpec, ItemData
from calico.selector import Selector
from calico.selector.index import LabelIndex

__all__ = ["IPSetMembers"]


class _IPSet:
    __slots__ = ("added", "full", "members", "named_port", "removed", "sent", "spec")

    def __init__(self, spec: IPSetSpec, sent: bool) -> None:
        self.spec = spec
        self.named_port = spec.named_port
        self.members: dict[str, int] = {}
        self.added: set[str] = set()
        self.removed: set[str] = set()
        self.full = True  # next flush sends the whole membership
        self.sent = sent  # the dataplane has a set of this id

    def members_of(self, item: ItemData) -> Iterable[str]:
        named = self.named_port
        if named is None:
            return item.cidrs
        if not item.ports:
            return ()
        proto, name = named
        ports = [p for n, pr, p in item.ports if n == name and pr == proto]
        if not ports:
            return ()
        return [f"{cidr.partition('/')[0]},{proto}:{port}" for cidr in item.cidrs for port in ports]


class IPSetMembers:
    """See the module docstring."""

    def __init__(self, park_limit: int = 1024) -> None:
        self._index = LabelIndex(self._on_match_start, self._on_match_stop)
        self._park_limit = park_limit
        self._parked: OrderedDict[str, _IPSet] = OrderedDict()
        self._items: dict[Hashable, ItemData] = {}
        self._by_selector: dict[Selector, dict[str, _IPSet]] = {}
        self._sets: dict[str, _IPSet] = {}
        self._dirty: set[str] = set()
        self._to_remove: set[str] = set()

    # ---- items -------------------------------------------------------------------------------

    def has_item(self, key: Hashable) -> bool:
        return key in self._items

    def update_item(
        self,
        key: Hashable,
        labels: Mapping[str, str],
        parents: Sequence[Hashable],
        data: ItemData,
    ) -> None:
        """Add or change an item: its labels (which sets it is in) and its addresses/ports (what it adds)."""
        old = self._items.get(key)
        if old is not None and old != data:
            # Swap the item's contribution in the sets it is already in; label changes come after.
            for selector in self._index.matching_selectors(key):
                for ipset in self._by_selector[selector].values():
                    before = set(ipset.members_of(old))
                    after = set(ipset.members_of(data))
                    for member in before - after:
                        self._remove_member(ipset, member)
                    for member in after - before:
                        self._add_member(ipset, member)
        self._items[key] = data
        self._index.update_labels(key, labels, parents)

    def remove_item(self, key: Hashable) -> None:
        if key in self._items:
            self._index.delete_labels(key)  # stop callbacks still need the item's data
            del self._items[key]

    def update_parent(self, parent: Hashable, labels: Mapping[str, str] | None) -> None:
        if labels is None:
            self._index.delete_parent_labels(parent)
        else:
            self._index.update_parent_labels(parent, labels)

    def effective_labels(self, key: Hashable) -> Mapping[str, str] | None:
        return self._index.effective_labels(key)

    # ---- sets --------------------------------------------------------------------------------

    def add_set(self, spec: IPSetSpec) -> None:
        """Start maintaining a set (the rule scanner calls this once per set, when first used)."""
        sid = spec.set_id
        if sid in self._sets:
            raise ValueError(f"IP set {sid} is already maintained")
        # A set removed and wanted again within one flush is replaced wholesale (it still exists there).
        was_sent = sid in self._to_remove
        self._to_remove.discard(sid)
        parked = self._parked.pop(sid, None)
        if parked is not None:
            # Still indexed and up to date: only the dataplane needs the whole membership again.
            parked.sent = was_sent
            self._sets[sid] = parked
            self._dirty.add(sid)
            return
        ipset = _IPSet(spec, sent=was_sent)
        self._sets[sid] = ipset
        self._dirty.add(sid)
        if spec.selector is None:
            for net in spec.nets:
                ipset.members[net] = 1
            return
        selector = spec.selector
        users = self._by_selector.get(selector)
        if users is None:
            self._by_selector[selector] = {sid: ipset}
            self._index.update_selector(selector, selector)  # start callbacks fill the set
        else:
            users[sid] = ipset
            items = self._items
            for key in self._index.matching_items(selector):
                for member in ipset.members_of(items[key]):
                    self._add_member(ipset, member)

    def remove_set(self, set_id: str) -> None:
        ipset = self._sets.pop(set_id, None)
        if ipset is None:
            return
        self._dirty.discard(set_id)
        if ipset.sent:
            self._to_remove.add(set_id)
        if ipset.spec.selector is None:
            return
        # Park it: membership keeps being maintained, but no deltas are tracked (full=True).
        ipset.full = True
        ipset.added = set()
        ipset.removed = set()
        self._parked[set_id] = ipset
        while len(self._parked) > self._park_limit:
            _, oldest = self._parked.popitem(last=False)
            self._unindex(oldest)

    def _unindex(self, ipset: _IPSet) -> None:
        selector = ipset.spec.selector
        assert selector is not None
        users = self._by_selector[selector]
        del users[ipset.spec.set_id]
        if not users:
            del self._by_selector[selector]
            self._index.delete_selector(selector)  # its stop callbacks find no set and do nothing

    def members(self, set_id: str) -> frozenset[str]:
        ipset = self._sets.get(set_id)
        return frozenset(ipset.members) if ipset is not None else frozenset()

    def spec(self, set_id: str) -> IPSetSpec | None:
        ipset = self._sets.get(set_id)
        return ipset.spec if ipset is not None else None

    def set_ids(self) -> frozenset[str]:
        """Sets the dataplane has or is about to get (parked sets are not among them)."""
        return frozenset(self._sets)

    @property
    def evaluations(self) -> int:
        """Selector evaluations so far (tests and benchmarks check that work follows the change)."""
        return self._index.evaluations

    # ---- output ------------------------------------------------------------------------------

    def flush(self) -> tuple[list[IPSetUpdate | IPSetDelta], list[IPSetRemove]]:
        """Events for what changed since the last flush: (creates and changes, removes)."""
        changes: list[IPSetUpdate | IPSetDelta] = []
        for sid in sorted(self._dirty):
            ipset = self._sets[sid]
            if ipset.full:
                changes.append(IPSetUpdate(sid, ipset.spec.set_type, frozenset(ipset.members)))
            elif ipset.added or ipset.removed:
                changes.append(IPSetDelta(sid, frozenset(ipset.added), frozenset(ipset.removed)))
            ipset.full = False
            ipset.sent = True
            ipset.added = set()
            ipset.removed = set()
        self._dirty = set()
        removes = [IPSetRemove(sid) for sid in sorted(self._to_remove)]
        self._to_remove = set()
        return changes, removes

    # ---- membership bookkeeping --------------------------------------------------------------

    def _on_match_start(self, selector: Hashable, key: Hashable) -> None:
        users = self._by_selector.get(selector)  # type: ignore[call-overload]
        if not users:
            return
        item = self._items[key]
        for ipset in users.values():
            for member in ipset.members_of(item):
                self._add_member(ipset, member)

    def _on_match_stop(self, selector: Hashable, key: Hashable) -> None:
        users = self._by_selector.get(selector)  # type: ignore[call-overload]
        if not users:
            return
        item = self._items[key]
        for ipset in users.values():
            for member in ipset.members_of(item):
                self._remove_member(ipset, member)

    def _add_member(self, ipset: _IPSet, member: str) -> None:
        count = ipset.members.get(member, 0)
        ipset.members[member] = count + 1
        if count == 0 and not ipset.full:
            if member in ipset.removed:
                ipset.removed.discard(member)
            else:
                ipset.added.add(member)
            self._dirty.add(ipset.spec.set_id)

    def _remove_member(self, ipset: _IPSet, member: str) -> None:
        count = ipset.members[member]
        if count > 1:
            ipset.members[member] = count - 1
            return
        del ipset.members[member]
        if not ipset.full:
            if member in ipset.added:
                ipset.added.discard(member)
            else:
                ipset.removed.add(member)
            self._dirty.add(ipset.spec.set_id)

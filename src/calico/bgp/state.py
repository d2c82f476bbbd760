"""The renderer's view of the datastore, folded from syncer updates (pure).

In: `calico.datastore.syncer.Update`s under the prefixes `BGPState.prefixes()` names. Out: `BGPInputs` for a
render, and whether an update changed anything.

Bad data never raises: a value that does not decode or validate as the kind its key names (or names another
resource than its key) is logged with its key and the reason, and counts as absent, like a deletion. Only this
node's affinities are followed; an affinity counts while its state is `confirmed` and it is not `deleted`, as
Calico's BGP and Felix read them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from calico.bgp.inputs import BGPInputs
from calico.datastore.keys import host_affinity_prefix, kind_prefix, parse_affinity_key, parse_key
from calico.datastore.kv import KeyValue
from calico.datastore.store import decode
from calico.datastore.syncer import Update
from calico.resources import BGPConfiguration, BGPPeer, FelixConfiguration, IPPool, Node, Resource, ResourceError
from calico.resources.ipam import BlockAffinity, IPAMRecordError

__all__ = ["BGPState", "affinity_confirmed"]

log = logging.getLogger(__name__)

_KINDS: dict[str, type[Resource]] = {
    cls.PLURAL: cls for cls in (Node, BGPConfiguration, BGPPeer, IPPool, FelixConfiguration)
}


def affinity_confirmed(key: str, value: bytes) -> bool:
    """Whether a stored block affinity is confirmed; a malformed one is not (and is logged)."""
    try:
        return BlockAffinity.from_json(key, value).confirmed
    except IPAMRecordError as e:
        log.warning("ignoring malformed block affinity: %s", e)
        return False


class BGPState:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self._nodes: dict[str, Node] = {}
        self._configs: dict[str, BGPConfiguration] = {}
        self._peers: dict[str, BGPPeer] = {}
        self._pools: dict[str, IPPool] = {}
        self._felix: dict[str, FelixConfiguration] = {}  # only `default` and `node.<this node>`
        self._tables: dict[str, dict[str, Any]] = {
            Node.PLURAL: self._nodes,
            BGPConfiguration.PLURAL: self._configs,
            BGPPeer.PLURAL: self._peers,
            IPPool.PLURAL: self._pools,
            FelixConfiguration.PLURAL: self._felix,
        }
        self._blocks: set[str] = set()

    def prefixes(self) -> list[str]:
        return [*(kind_prefix(plural) for plural in _KINDS), host_affinity_prefix(self.node_name)]

    def apply(self, updates: Iterable[Update]) -> bool:
        """Fold updates in; True when any of them changed what a render reads."""
        changed = False
        for up in updates:
            changed |= self._apply_one(up)
        return changed

    def _apply_one(self, up: Update) -> bool:
        affinity = parse_affinity_key(up.key)
        if affinity is not None:
            node, cidr = affinity
            if node != self.node_name:
                return False
            confirmed = up.value is not None and affinity_confirmed(up.key, up.value)
            was = cidr in self._blocks
            (self._blocks.add if confirmed else self._blocks.discard)(cidr)
            return was != confirmed
        key = parse_key(up.key)
        cls = _KINDS.get(key.plural) if key is not None else None
        if key is None or cls is None or key.namespace is not None:
            return False
        if cls is FelixConfiguration and key.name not in ("default", f"node.{self.node_name}"):
            return False
        table = self._tables[key.plural]
        resource = None if up.value is None else self._decode(cls, up)
        if resource is None:
            return table.pop(key.name, None) is not None
        table[key.name] = resource
        return True

    @staticmethod
    def _decode(cls: type[Resource], up: Update) -> Resource | None:
        assert up.value is not None
        try:
            resource = decode(KeyValue(up.key, up.value, 0, up.revision))
        except ResourceError as e:
            log.warning("ignoring bad %s at %s: %s", cls.KIND, up.key, e)
            return None
        except Exception as e:  # odd bytes must never stop the renderer
            log.warning("ignoring bad %s at %s: %s: %s", cls.KIND, up.key, type(e).__name__, e)
            return None
        key = parse_key(up.key)
        if not isinstance(resource, cls) or key is None or resource.metadata.name != key.name:
            what = f"{resource.KIND}({resource.metadata.name})"
            log.warning("ignoring %s at %s: the value is %s", cls.KIND, up.key, what)
            return None
        return resource

    def interface_prefixes(self) -> tuple[str, ...] | None:
        """Felix's InterfacePrefix from the datastore (this node's FelixConfiguration, then `default`), which
        says which interfaces carry workload routes to export; None when neither sets it."""
        for name in (f"node.{self.node_name}", "default"):
            conf = self._felix.get(name)
            value = getattr(conf.spec, "interfacePrefix", None) if conf is not None else None
            if value:
                return tuple(p.strip() for p in str(value).split(",") if p.strip())
        return None

    def inputs(self) -> BGPInputs:
        return BGPInputs(
            node_name=self.node_name,
            nodes=dict(self._nodes),
            configs=dict(self._configs),
            peers=dict(self._peers),
            pools=dict(self._pools),
            blocks=frozenset(self._blocks),
        )

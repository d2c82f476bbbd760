"""The datastore's resources at one revision: what an explanation is computed from (the one read).

Enters: a `KVStore`. Leaves: a `Snapshot` (every key under Calico's v3 resource prefix, with its value), and
its pending variant: staged policies put in force (`stagedAction: Set` replaces or creates the policy of the
same name, `Delete` removes it), so the same calculation shows what they would do.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass

from calico.datastore.keys import RESOURCE_PREFIX, ResourceKey, kind_prefix, parse_key
from calico.datastore.kv import KVStore
from calico.resources import STAGED_KINDS

_STAGED = {cls.PLURAL: cls for cls in STAGED_KINDS}
STAGED_PREFIXES = tuple(kind_prefix(plural) for plural in _STAGED)  # where staged policies are stored
_ENFORCED_PLURAL = {"NetworkPolicy": "networkpolicies", "GlobalNetworkPolicy": "globalnetworkpolicies"}


@dataclass(frozen=True, slots=True)
class Snapshot:
    revision: int
    values: dict[str, bytes]  # key -> value

    @property
    def has_staged(self) -> bool:
        return any(k.startswith(STAGED_PREFIXES) for k in self.values)

    def pending(self) -> tuple[Snapshot, list[str]]:
        """The snapshot with every staged policy in force, and the problems met (a staged value that is not
        JSON is left out, and named)."""
        values = {k: v for k, v in self.values.items() if not _staged_plural(k)}
        problems: list[str] = []
        for key, value in sorted(self.values.items()):
            plural = _staged_plural(key)
            if not plural:
                continue
            parsed = parse_key(key)
            assert parsed is not None
            cls = _STAGED[plural]
            target = ResourceKey(_ENFORCED_PLURAL[cls.ENFORCED_KIND], parsed.name, parsed.namespace).path()
            try:
                doc = json.loads(value)
                spec = dict(doc.get("spec") or {})
            except (ValueError, AttributeError) as e:
                problems.append(f"{cls.KIND} {parsed.name}: not JSON ({e}); left out")
                continue
            action = spec.pop("stagedAction", "Set")
            if action == "Delete":
                values.pop(target, None)
            else:
                values[target] = json.dumps({**doc, "kind": cls.ENFORCED_KIND, "spec": spec}).encode()
        return Snapshot(self.revision, values), problems


def _staged_plural(key: str) -> str | None:
    rest = key[len(RESOURCE_PREFIX):] if key.startswith(RESOURCE_PREFIX) else ""
    plural = rest.split("/", 1)[0]
    return plural if plural in _STAGED else None


async def read(kv: KVStore) -> Snapshot:
    kvs, revision = await kv.list(RESOURCE_PREFIX)
    return Snapshot(revision, {item.key: item.value for item in kvs})


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The snapshot holds every key (tens of thousands of objects); the cyclic collector walking them again and
    again while the graph allocates would double an explanation's time. Nothing here makes cycles worth
    collecting early."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()

"""IP pools: IPPool resources (by name) in; pools by CIDR out.

Enters (`PoolTracker.on_pool`): IPPool changes (None = deleted), keyed by the resource's name.
Leaves: for each CIDR whose pool changed, an `IPPoolUpdate` (or None when no pool has that CIDR any more)
to both its sinks: the dataplane's (the sequencer: natOutgoing) and the route resolver's (which pools are
VXLAN). A pool renamed or re-addressed is a remove of the old CIDR and an update of the new one. Two pools
with one CIDR (the datastore refuses overlaps, but data is data): the first by name counts.
"""

from __future__ import annotations

from typing import Protocol

from calico.calculation.events import IPPoolUpdate
from calico.resources import IPPool

__all__ = ["PoolSink", "PoolTracker", "pool_update"]


class PoolSink(Protocol):
    """Who follows pools by CIDR, None meaning gone (`sequencer.Sequencer`, `routes.RouteResolver`)."""

    def pool(self, cidr: str, update: IPPoolUpdate | None) -> None: ...


def pool_update(res: IPPool) -> IPPoolUpdate:
    spec = res.spec
    return IPPoolUpdate(
        cidr=spec.cidr,
        nat_outgoing=spec.natOutgoing,
        vxlan_mode=spec.vxlanMode,
        ipip_mode=spec.ipipMode,
        disabled=spec.disabled,
        block_size=spec.blockSize or 0,
    )


class PoolTracker:
    """See the module docstring."""

    def __init__(self, dataplane: PoolSink, routes: PoolSink) -> None:
        self._sinks = (dataplane, routes)
        self._by_name: dict[str, IPPoolUpdate] = {}
        self._sent: dict[str, IPPoolUpdate] = {}  # by CIDR: what the sinks were told

    def knows(self, name: str) -> bool:
        return name in self._by_name

    def on_pool(self, name: str, res: IPPool | None) -> None:
        old = self._by_name.pop(name, None)
        if res is not None:
            self._by_name[name] = pool_update(res)
        touched = {u.cidr for u in (old, self._by_name.get(name)) if u is not None}
        for cidr in sorted(touched):
            self._settle(cidr)

    def _settle(self, cidr: str) -> None:
        holders = [n for n, u in self._by_name.items() if u.cidr == cidr]
        update = self._by_name[min(holders)] if holders else None
        if self._sent.get(cidr) == update:
            return
        if update is None:
            del self._sent[cidr]
        else:
            self._sent[cidr] = update
        for sink in self._sinks:
            sink.pool(cidr, update)

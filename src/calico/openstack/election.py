"""One leader among several Neutron server processes, through a datastore lease.

Enters: a `KVStore`, this process's id, a TTL. Leaves: `campaign()` → whether this process leads now. The
leader holds `/calico/openstack/v1/leader` (value: its id) under a lease it refreshes every campaign; if it
dies the key vanishes within the TTL and the next campaigner takes over.
"""

from __future__ import annotations

from calico.datastore.kv import KeyExists, KeyNotFound, KVStore

LEADER_KEY = "/calico/openstack/v1/leader"


class Election:
    def __init__(self, my_id: str, ttl: float) -> None:
        self.my_id = my_id
        self.ttl = ttl
        self._lease = 0

    async def campaign(self, kv: KVStore) -> bool:
        if self._lease:
            try:
                await kv.refresh_lease(self._lease)
                held = await kv.get(LEADER_KEY)
                if held is not None and held.value.decode() == self.my_id:
                    return True
            except KeyNotFound:
                pass
            self._lease = 0
        lease = await kv.grant_lease(self.ttl)
        try:
            await kv.create(LEADER_KEY, self.my_id.encode(), lease=lease)
        except KeyExists:
            await kv.revoke_lease(lease)
            return False
        self._lease = lease
        return True

    async def resign(self, kv: KVStore) -> None:
        if self._lease:
            lease, self._lease = self._lease, 0
            await kv.revoke_lease(lease)

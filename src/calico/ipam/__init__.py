"""Calico IPAM: IPPools cut into blocks, blocks claimed by hosts, addresses handed out from them with a
compare-and-swap on the block, under libcalico-go's key layout (`/calico/ipam/v2/...`).

In: a `KVStore` (etcd or embedded), the IPPools, IPReservations and Nodes in it, and requests: "N addresses of
each version for handle H on host X", "this address", "release these / this handle / this node".
Out: addresses, and the IPAM records in the datastore (blocks, block affinities, handles, config), which Felix
and the BGP renderer read through `calico.resources.ipam`.

Pure core: `block` (one block's ordinals, free list and attributes), `pools` (pool choice, block arithmetic,
reservations, free-block search), `report` (usage and the check report).
I/O shell: `store` (the one door to the datastore: typed reads with retries, commits), `write` (one block + its
handles per compare-and-swap transaction, lost answers resolved by reading), `claim` (affinity pending ->
block -> confirmed, and letting go), `assign`, `release`, and `client` (`IPAMClient`, the API).
"""

from calico.ipam.client import Assignment, AssignResult, AutoAssignArgs, IPAMClient
from calico.ipam.errors import (
    AddressesExhausted,
    AddressInUse,
    AddressNotInPool,
    AffinityConflict,
    InvalidConfig,
    IPAMError,
    IPAMUnavailable,
    NoUsablePool,
    TooMuchContention,
)
from calico.ipam.release import Expected, NodeRelease

__all__ = [
    "AddressInUse",
    "AddressNotInPool",
    "AddressesExhausted",
    "AffinityConflict",
    "AssignResult",
    "Assignment",
    "AutoAssignArgs",
    "Expected",
    "IPAMClient",
    "IPAMError",
    "IPAMUnavailable",
    "InvalidConfig",
    "NoUsablePool",
    "NodeRelease",
    "TooMuchContention",
]

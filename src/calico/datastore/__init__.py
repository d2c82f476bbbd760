"""Datastore: where Calico's state lives, and the one home of datastore I/O.

Enters: resources to store (from calicoctl and orchestrator plugins) and requests to follow prefixes.
Leaves: stored resources, and the syncer's ordered update stream (snapshot, then changes, with in-sync
signals) that the calculation graph consumes.

Layers, bottom up: `kv` (the revisioned key-value contract) with its backends `etcd` (etcd v3) and
`embedded` (one SQLite file shared by processes on one machine); `config` (which backend); `keys` (key
layout); `store` (typed resources with resourceVersion concurrency); `syncer` (snapshot + watch + resync).
"""

"""Calculation graph: the syncer's update stream in, this host's desired dataplane state out. Pure, no I/O.

Enters: `calico.datastore.syncer` updates (key, value bytes or None, revision) and sync status: v3 resources
and IPAM block affinities (`/calico/ipam/v2/host/`).
Leaves: `calico.calculation.events` deltas, in a safe order (IP sets before the rules that use them and removed
after; policies and profiles before the endpoints that reach them and removed after; VTEPs before the routes
through them and removed after), then `InSync`. See `graph` for the stages and `sequencer` for the order.
"""

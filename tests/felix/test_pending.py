"""Felix's pending verdicts for flow logs, against a real datastore (embedded and etcd): no read while nothing is
staged; with a staged deny, the flows it would stop are pending-deny, named by the staged policy."""

from __future__ import annotations

from calico.datastore.kv import KeyValue, KVStore
from calico.datastore.store import ResourceStore, encode, key_of
from calico.explain.flow import Flow
from calico.felix.pending import PendingVerdicts
from calico.resources import load_documents

DOCS = """
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: ns1, labels: {app: web}}
spec: {node: h1, interfaceName: caliweb, ipNetworks: [198.18.0.2/32], profiles: [open]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: client, namespace: ns1, labels: {app: client}}
spec: {node: h1, interfaceName: caliclient, ipNetworks: [198.18.0.3/32], profiles: [open]}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: open}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
"""
STAGED = """
apiVersion: projectcalico.org/v3
kind: StagedNetworkPolicy
metadata: {name: deny-web, namespace: ns1}
spec:
  selector: app == 'web'
  ingress: [{action: Deny, protocol: TCP, destination: {ports: [22]}}, {action: Allow}]
"""
FLOWS = [Flow("198.18.0.3", "198.18.0.2", 6, 40000, 22), Flow("198.18.0.3", "198.18.0.2", 6, 40000, 80)]


class CountingKV:
    """The real store, counting lists (the flush must not read while nothing is staged)."""

    def __init__(self, kv: KVStore) -> None:
        self.kv, self.lists = kv, 0

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        self.lists += 1
        return await self.kv.list(prefix)


async def test_pending_verdicts_follow_staged_policies(kv: KVStore) -> None:
    store = ResourceStore(kv)
    await store.ensure_default_tier()
    for res in load_documents(DOCS):
        await store.apply(res)
    counting = CountingKV(kv)
    pending = PendingVerdicts(counting)  # type: ignore[arg-type]
    assert await pending.verdicts(FLOWS) == {} and counting.lists == 0
    [staged] = load_documents(STAGED)
    await store.apply(staged)
    key = key_of(staged).path()
    pending.on_update(key, encode(staged))
    pending.on_update(key_of(load_documents(DOCS)[0]).path(), b"{}")  # not staged: ignored
    got = await pending.verdicts(FLOWS)
    assert counting.lists == 1
    assert [got[f].verdict for f in FLOWS] == ["deny", "allow"]
    assert "ns1/deny-web rule 0" in got[FLOWS[0]].reason
    pending.on_update(key, None)
    assert not pending.active and await pending.verdicts(FLOWS) == {}

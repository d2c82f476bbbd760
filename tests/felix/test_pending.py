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


async def test_flow_records_get_their_pending_verdict(kv: KVStore) -> None:
    from calico.flowlogs.records import NET, Endpoint, FlowRecord, TraceStep, from_json

    store = ResourceStore(kv)
    await store.ensure_default_tier()
    for res in [*load_documents(DOCS), *load_documents(STAGED)]:
        await store.apply(res)
    pending = PendingVerdicts(kv)
    web, client = Endpoint("wep", "ns1", "web"), Endpoint("wep", "ns1", "client")
    records = [FlowRecord(1, 2, "h1", "tcp", "198.18.0.3", 40000, client, "198.18.0.2", 22, web, "allow", (), 1, 60),
               FlowRecord(1, 2, "h1", "udp", "198.19.9.9", 5000, NET, "198.18.0.2", 53, web, "allow", (), 1, 60)]
    assert await pending.annotate(records) == records  # nothing staged (as far as the syncer said)
    [staged] = load_documents(STAGED)
    pending.on_update(key_of(staged).path(), encode(staged))
    ssh, dns = await pending.annotate(records)
    assert ssh.pending_action == "deny"
    assert ssh.pending_policies == (TraceStep("egress", "profile", "", "open", 0, "allow"),
                                    TraceStep("ingress", "policy", "default", "ns1/deny-web", 0, "deny"))
    assert dns.pending_action == "allow"  # from outside: only web's ingress, rule 1 of the staged policy
    assert dns.pending_policies == (TraceStep("ingress", "policy", "default", "ns1/deny-web", 1, "allow"),)
    assert from_json(ssh.to_json()) == ssh and from_json(records[0].to_json()) == records[0]
    assert "pending_action" not in records[0].to_json()

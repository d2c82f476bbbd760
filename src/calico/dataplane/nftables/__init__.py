"""nftables dataplane: Calico's one `table inet calico` per host (IPv4 and IPv6).

In: a `DesiredState` (with its `DataplaneConfig`). Out: the table in one network namespace's kernel.

    render (pure)   names · sets (IP sets) · rules (policies, profiles) · walk (tier walk as rules)
                    · endpoints (workload chains, policy groups) · hep_chains (host endpoints, stages)
                    · nat (metadata DNAT, floating IP maps, natOutgoing) · table (base chains, the whole
                    TableModel) · text (nft text) · model (plain values)
    plan (pure)     diff.Planner: a full replacement or an incremental transaction for what changed, as
                    typed operations (ops: written as nft text by the real transports)
    I/O             backend.NftBackend (apply, read-back, repair) over a transport (as knftables has):
                    transport.LibNftTransport (libnftables in-process, libnft) or SpawnTransport (`nft -f -`);
                    fake.FakeNft keeps the table in memory with the same interface, for tests without root

Verdicts inside policy chains travel as mark bits (`calico.dataplane.marks`), because an `accept` would end
the base chain and skip the other endpoint's chain (egress of the sender and ingress of the receiver both run
in `forward`). The endpoint chain returns (allowed) as soon as MARK_ACCEPT is set, skips the rest of a tier
once MARK_PASS is set, drops at the end of a tier whose policies applied but did not match (defaultAction
Deny), then tries profiles, then drops. Endpoint chains are entered with `goto`, so their `return` goes back to
the base chain. Anti-spoofing is an explicit per-endpoint source check (`ip saddr != { own addresses,
allowSpoofedSourcePrefixes } drop`) rather than `fib saddr . iif oif missing`: it does not depend on the host's
routes being in place yet.
"""

from calico.dataplane.nftables.backend import NftBackend, NftError, create_firewall
from calico.dataplane.nftables.model import TableModel
from calico.dataplane.nftables.table import render_model
from calico.dataplane.nftables.text import render_replace

__all__ = ["NftBackend", "NftError", "TableModel", "create_firewall", "render_model", "render_replace"]

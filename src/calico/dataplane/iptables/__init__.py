"""iptables + ipset dataplane: Calico's `cali-` chains (filter, and nat / raw / mangle when needed) and its
`cali40` / `cali60` ipsets, in upstream Calico's layout. Same semantics as the nftables backend.

In: a `DesiredState` (with its `DataplaneConfig`). Out: chains and sets in one network namespace's kernel.

    render (pure)   names · model (rules, chains, hashes) · rules (policies, profiles) · walk (tier walk as
                    rules) · endpoints (workload chains, policy groups, dispatch) · hep_chains (host endpoints)
                    · nat (metadata DNAT, floating IPs, natOutgoing) · stages (untracked / pre-DNAT, raw and
                    mangle) · table (a family's chains) · text (restore text, save parsing) · ipsets (sets and
                    `ipset restore` text)
    plan (pure)     plan.Planner: full resync or incremental transactions
    I/O             backend.IptablesBackend: iptables-restore/-save, ipset (fits
                    `calico.dataplane.driver.FirewallBackend`, as `NftBackend` does; `factory` picks either)
"""

from __future__ import annotations

from calico.dataplane.iptables.backend import BACKENDS, IptablesBackend, IptablesError, create_firewall

__all__ = ["BACKENDS", "IptablesBackend", "IptablesError", "create_firewall"]

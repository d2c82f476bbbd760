"""iptables + ipset dataplane: Calico's `cali-` chains in the filter table and `cali40`/`cali60` ipsets.

render / ipsets (pure: state -> chains, sets, restore text) -> plan (pure: full or incremental
transactions) -> backend (the only process I/O: iptables-restore/-save, ipset). `IptablesBackend` fits
`calico.dataplane.driver.FirewallBackend`, as `NftBackend` does; `calico.dataplane.factory` picks either.
"""

from __future__ import annotations

from calico.dataplane.iptables.backend import BACKENDS, IptablesBackend, IptablesError, create_firewall

__all__ = ["BACKENDS", "IptablesBackend", "IptablesError", "create_firewall"]

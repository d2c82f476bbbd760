"""iptables + ipset dataplane: Calico's `cali-` chains in the filter table and `cali40`/`cali60` ipsets.

render / ipsets (pure: state -> chains, sets, restore text) -> plan (pure: full or incremental
transactions) -> backend (the only process I/O: iptables-restore/-save, ipset). `Backend` (the same
`calico.dataplane.driver.FirewallBackend` that `NftBackend` fits) lets the agent pick either.
"""

from __future__ import annotations

from calico.dataplane.driver import FirewallBackend as Backend
from calico.dataplane.driver import create_driver
from calico.dataplane.iptables.backend import BACKENDS, IptablesBackend, IptablesError

__all__ = ["BACKENDS", "Backend", "IptablesBackend", "IptablesError", "create_driver"]

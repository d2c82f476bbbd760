"""MTUs, as Calico computes them: the host's, each tunnel device's, and the one workloads should use.

In: the host's interfaces (`HostLink`), MTUIfacePattern, the interface holding the underlay address, and the
configured tunnel MTUs (0: automatic). Out: numbers. Pure.

- host MTU: the smallest MTU of the up interfaces whose name matches MTUIfacePattern (Calico's rule; Felix's
  own devices never count); when none matches, the MTU of the interface holding this host's underlay address;
  1500 when neither is known.
- a tunnel device's MTU: its configured value, else the host MTU minus the encapsulation's overhead (VXLAN 50
  over IPv4, 70 over IPv6; IP-in-IP 20).
- the workload MTU (what Calico writes to /var/lib/calico/mtu for the CNI plugin): the smallest MTU of the
  tunnel devices in use, or the host MTU when there are none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

from calico.dataplane.network.model import FELIX_DEVICES, Device, HostLink

DEFAULT_MTU = 1500


@functools.lru_cache(maxsize=8)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def host_mtu(links: Iterable[HostLink], pattern: str, underlay: HostLink | None) -> int:
    matching = [
        link.mtu for link in links if link.up and link.name not in FELIX_DEVICES and _pattern(pattern).search(link.name)
    ]
    if matching:
        return min(matching)
    return underlay.mtu if underlay is not None else DEFAULT_MTU


def tunnel_mtu(host: int, overhead: int, configured: int) -> int:
    return configured if configured else host - overhead


def workload_mtu(host: int, devices: Iterable[Device]) -> int:
    return min((d.mtu for d in devices), default=host)

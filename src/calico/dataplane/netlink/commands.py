"""The per-interface sysctls and conntrack flushes, run as (batched) processes inside one network namespace.

In: a namespace name (None: the current namespace) and interface names / addresses. Out: kernel settings
written and conntrack entries deleted in that namespace only, by one process spawn per batch:
`ip netns exec NS sysctl -w ...` for every setting of every interface, `ip netns exec NS sh -c 'conntrack -D
...; ...'` for every address. /proc/sys/net is per namespace of the writing process, so writing it from this
process would change the namespace the agent runs in, never the one asked for: hence the spawn.
"""

from __future__ import annotations

import ipaddress
import logging
import shlex
from collections.abc import Iterable

from calico.dataplane.process import run_tool

log = logging.getLogger(__name__)


def interface_sysctls(iface: str) -> list[str]:
    """Calico's settings for a workload interface (host side of the veth)."""
    return [
        # The workload's default gateway 169.254.1.1 exists nowhere: the host answers ARP for it (and for
        # every other address it routes elsewhere) on this interface, at once.
        f"net.ipv4.conf.{iface}.proxy_arp=1",
        f"net.ipv4.neigh.{iface}.proxy_delay=0",
        f"net.ipv4.conf.{iface}.forwarding=1",
        # Strict reverse-path filtering: a workload may only send from addresses routed back to its own
        # interface (the kernel uses max(conf.all, conf.<if>), so this holds whatever `all` says).
        f"net.ipv4.conf.{iface}.rp_filter=1",
        # IPv6 gateway: the host side's link-local address (from MAC ee:ee:ee:ee:ee:ee) is the workload's
        # default route, so IPv6 must be on; the host never configures itself from a workload's RAs.
        f"net.ipv6.conf.{iface}.disable_ipv6=0",
        f"net.ipv6.conf.{iface}.accept_ra=0",
        f"net.ipv6.conf.{iface}.forwarding=1",
    ]


async def run(netns: str | None, argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
    """Run `argv` inside `netns` without blocking the event loop; returns (rc, stderr)."""
    rc, _, err = await run_tool(netns, argv, timeout=timeout, check=False)
    return rc, err.strip()


async def write_sysctls(netns: str | None, ifaces: Iterable[str]) -> set[str]:
    """Write every interface's settings in one spawn; returns the interfaces whose settings failed."""
    ifaces = sorted(ifaces)
    if not ifaces:
        return set()
    settings = [s for iface in ifaces for s in interface_sysctls(iface)]
    rc, err = await run(netns, ["sysctl", "-q", "-w", *settings])
    if rc == 0:
        return set()
    # sysctl carries on past a bad key; the interfaces named in its errors (usually: vanished) are retried.
    failed = {iface for iface in ifaces if f".{iface}." in err or f"/{iface}/" in err}
    log.warning("sysctl in %s failed (rc=%s): %s", netns or "current netns", rc, err)
    return failed or set(ifaces)


async def flush_conntrack(netns: str | None, addresses: Iterable[str]) -> bool:
    """Delete conntrack entries from or to each address (both directions, per family); True when run."""
    cmds = []
    for addr in sorted(addresses):
        ip = ipaddress.ip_address(addr)  # validated: only addresses ever reach the shell line
        fam = "ipv6" if ip.version == 6 else "ipv4"
        for flag in ("-s", "-d"):
            cmds.append(f"conntrack -D -f {fam} {flag} {shlex.quote(str(ip))} >/dev/null 2>&1")
    if not cmds:
        return True
    # conntrack -D exits 1 when nothing matched, which is fine: the trailing `true` keeps rc for real failures
    # of the spawn itself only.
    rc, err = await run(netns, ["sh", "-c", "; ".join([*cmds, "true"])])
    if rc != 0:
        log.warning("conntrack flush in %s failed (rc=%s): %s", netns or "current netns", rc, err)
    return rc == 0

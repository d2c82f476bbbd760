"""The per-interface sysctls, conntrack accounting and conntrack flushes, inside one network namespace.

In: a namespace name (None: the current namespace) and interface names / addresses. Out: kernel settings
written and conntrack entries deleted in that namespace only. /proc/sys/net belongs to the namespace of the
process writing it, so for the agent's own namespace (None) sysctls are written straight to /proc/sys (no
spawn: microseconds); for a named namespace by one spawn per batch, `ip netns exec NS sysctl -w ...`.
Conntrack always takes one spawn per batch: `sh -c 'conntrack -D ...; ...'` for every address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shlex
from collections.abc import Iterable
from pathlib import Path

from calico.dataplane.process import run_tool

log = logging.getLogger(__name__)


def interface_sysctls(iface: str, route_localnet: bool = False) -> list[str]:
    """Calico's settings for a workload interface (host side of the veth). `route_localnet`: the OpenStack
    metadata DNAT goes to a loopback address (127.0.0.1:8775 by default), which the kernel drops as a martian
    on any other interface unless this is on (both ways: the reply leaves with the loopback source)."""
    return [
        # The workload's default gateway 169.254.1.1 exists nowhere: the host answers ARP for it (and for
        # every other address it routes elsewhere) on this interface, at once.
        f"net.ipv4.conf.{iface}.proxy_arp=1",
        f"net.ipv4.neigh.{iface}.proxy_delay=0",
        f"net.ipv4.conf.{iface}.forwarding=1",
        # Strict reverse-path filtering: a workload may only send from addresses routed back to its own
        # interface (the kernel uses max(conf.all, conf.<if>), so this holds whatever `all` says).
        f"net.ipv4.conf.{iface}.rp_filter=1",
        f"net.ipv4.conf.{iface}.route_localnet={int(route_localnet)}",
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


def proc_path(setting: str) -> tuple[Path, str]:
    """`net.ipv4.conf.cali1.proxy_arp=1` -> (/proc/sys/net/ipv4/conf/cali1/proxy_arp, "1"). The interface is the
    fourth component and may itself hold dots (eth0.100), so only the fixed parts are split."""
    key, value = setting.split("=", 1)
    head = key.split(".", 3)  # net, ipv4, conf, "<iface>.<leaf>"
    iface, leaf = head[3].rsplit(".", 1)
    return Path("/proc/sys", *head[:3], iface, leaf), value


def write_own_sysctls(ifaces: Iterable[str], route_localnet: bool = False) -> set[str]:
    """The agent's own namespace: write /proc/sys directly; returns the interfaces whose settings failed."""
    failed: set[str] = set()
    for iface in ifaces:
        for setting in interface_sysctls(iface, route_localnet):
            path, value = proc_path(setting)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                try:
                    os.write(fd, value.encode())
                finally:
                    os.close(fd)
            except OSError as e:  # usually: the interface vanished meanwhile; retried by the caller
                log.warning("sysctl %s failed: %s", setting, e)
                failed.add(iface)
                break
    return failed


async def write_sysctls(netns: str | None, ifaces: Iterable[str], route_localnet: bool = False) -> set[str]:
    """Write every interface's settings (one spawn for a named namespace); returns the interfaces that failed."""
    ifaces = sorted(ifaces)
    if not ifaces:
        return set()
    if netns is None:
        return write_own_sysctls(ifaces, route_localnet)
    settings = [s for iface in ifaces for s in interface_sysctls(iface, route_localnet)]
    rc, err = await run(netns, ["sysctl", "-q", "-w", *settings])
    if rc == 0:
        return set()
    # sysctl carries on past a bad key; the interfaces named in its errors (usually: vanished) are retried.
    failed = {iface for iface in ifaces if f".{iface}." in err or f"/{iface}/" in err}
    log.warning("sysctl in %s failed (rc=%s): %s", netns or "current netns", rc, err)
    return failed or set(ifaces)


CONNTRACK_ACCT = "net.netfilter.nf_conntrack_acct"


async def enable_conntrack_accounting(netns: str | None) -> bool:
    """Conntrack counts packets and bytes per connection (flow logs read them); True when set. Entries that
    exist already stay without counters."""
    if netns is None:
        path = Path("/proc/sys", *CONNTRACK_ACCT.split("."))
        try:
            path.write_text("1")
            return True
        except OSError as e:
            log.warning("%s=1 failed: %s", CONNTRACK_ACCT, e)
            return False
    rc, err = await run(netns, ["sysctl", "-q", "-w", f"{CONNTRACK_ACCT}=1"])
    if rc != 0:
        log.warning("%s=1 in %s failed: %s", CONNTRACK_ACCT, netns, err)
    return rc == 0


async def flush_conntrack(netns: str | None, addresses: Iterable[str]) -> bool:
    """Delete conntrack entries from or to each address (both directions, per family), and those whose replies
    go to it (a floating IP's SNATed flows); True when run."""
    cmds = []
    for addr in sorted(addresses):
        ip = ipaddress.ip_address(addr)  # validated: only addresses ever reach the shell line
        fam = "ipv6" if ip.version == 6 else "ipv4"
        for flag in ("-s", "-d", "--reply-dst"):
            cmds.append(f"conntrack -D -f {fam} {flag} {shlex.quote(str(ip))} >/dev/null 2>&1")
    if not cmds:
        return True
    # conntrack -D exits 1 when nothing matched, which is fine: the trailing `true` keeps rc for real failures
    # of the spawn itself only.
    rc, err = await run(netns, ["sh", "-c", "; ".join([*cmds, "true"])])
    if rc != 0:
        log.warning("conntrack flush in %s failed (rc=%s): %s", netns or "current netns", rc, err)
    return rc == 0

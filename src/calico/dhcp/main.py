"""`calico-dhcp-agent`: the Calico DHCP agent of one OpenStack compute host.

Options (all optional): `--hostname` (the compute host, as Neutron's `binding:host_id` and the endpoints'
`spec.node` name it; default this machine's host name), `--region` (the driver's `openstack_region`, default
`no-region`), `-c/--config FILE` (the datastore, as calicoctl finds it: `calico.datastore.config.resolve`),
`--state-dir` (default `/var/lib/calico/dhcp`: hosts, opts, leases, pid file), `--interface` (the agent's own
bridge, default `dhcp.calico`), `--interface-prefix` (default `tap`), `--lease-time` (seconds, default 86400),
`--mtu`, `--dnsmasq` (the binary), `--dnsmasq-user`, `--log-dhcp`, `--log-level`.

Like Felix, it refuses to run in the machine's initial network namespace unless `CALICO_ALLOW_INITIAL_NETNS=1`
says this is a real compute host (it adds an interface and addresses). Exit codes: 0 stopped by SIGTERM/SIGINT,
1 bad options, the datastore cannot be opened, or the namespace interlock.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from calico.datastore import config as dsconfig
from calico.datastore.daemon import serve
from calico.datastore.kv import KVStore
from calico.dhcp.agent import DhcpAgent
from calico.dhcp.dnsmasq import DnsmasqProcess
from calico.dhcp.interface import NetlinkGatewayInterface
from calico.dhcp.render import Paths, Settings

__all__ = ["main"]

log = logging.getLogger("calico.dhcp")

ALLOW_INITIAL_NETNS = "CALICO_ALLOW_INITIAL_NETNS"
DEFAULT_STATE_DIR = "/var/lib/calico/dhcp"
_MAX_IFNAME = 15


def in_initial_netns() -> bool:
    """True unless this process runs in a named namespace (`ip netns`): PID 1's is not always readable, so
    "not a named one" stands for "the machine's own" (as Felix's interlock reads it)."""
    try:
        mine = os.stat("/proc/self/ns/net")
        named = [os.stat(entry) for entry in Path("/run/netns").iterdir()]
    except OSError:
        return True
    return not any(os.path.samestat(mine, other) for other in named)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calico-dhcp-agent",
                                description="Serve DHCP (and IPv6 RA) to this host's OpenStack VMs with dnsmasq.")
    p.add_argument("--hostname", default=socket.gethostname(), help="this compute host's name (default: %(default)s)")
    p.add_argument("--region", default="no-region", help="OpenStack region (default: %(default)s)")
    p.add_argument("-c", "--config", default=None, help="CalicoAPIConfig file for the datastore")
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="dnsmasq's files (default: %(default)s)")
    p.add_argument("--interface", default=Settings.interface, help="the agent's own bridge (default: %(default)s)")
    p.add_argument("--interface-prefix", default=Settings.interface_prefix,
                   help="VM interfaces (default: %(default)s)")
    p.add_argument("--lease-time", type=int, default=Settings.lease_seconds, help="seconds (default: %(default)s)")
    p.add_argument("--mtu", type=int, default=None, help="MTU given to VMs (DHCP option 26, RA)")
    p.add_argument("--dnsmasq", default="dnsmasq", help="the dnsmasq binary (default: %(default)s)")
    p.add_argument("--dnsmasq-user", default=None, help="user dnsmasq drops privileges to (default: dnsmasq's)")
    p.add_argument("--log-dhcp", action="store_true", help="dnsmasq logs every option it sends")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _settings(args: argparse.Namespace) -> Settings:
    """Raises ValueError naming the option when one is unusable."""
    if not 0 < len(args.interface) <= _MAX_IFNAME or "/" in args.interface or " " in args.interface:
        raise ValueError(f"--interface {args.interface!r}: an interface name of 1 to {_MAX_IFNAME} characters")
    if not args.interface_prefix or args.interface.startswith(args.interface_prefix):
        raise ValueError(f"--interface-prefix {args.interface_prefix!r}: must be non-empty and not match --interface")
    if args.lease_time < 120:
        raise ValueError(f"--lease-time {args.lease_time}: at least 120 seconds (dnsmasq's minimum)")
    if args.mtu is not None and not 576 <= args.mtu <= 65535:
        raise ValueError(f"--mtu {args.mtu}: between 576 and 65535")
    return Settings(interface=args.interface, interface_prefix=args.interface_prefix, lease_seconds=args.lease_time,
                    mtu=args.mtu, user=args.dnsmasq_user, log_dhcp=args.log_dhcp)


async def _serve(args: argparse.Namespace, settings: Settings, ds: dsconfig.DatastoreConfig) -> int:
    async def body(kv: KVStore) -> int:
        paths = Paths(Path(args.state_dir))
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        paths.state_dir.chmod(0o755)  # dnsmasq rereads its files after dropping privileges
        agent = DhcpAgent(kv, args.hostname, args.region, settings, paths,
                          NetlinkGatewayInterface(settings.interface), DnsmasqProcess(paths), binary=args.dnsmasq)
        log.info("host %s, region %s: %s; dnsmasq files in %s, gateway addresses on %s", args.hostname,
                 args.region, ds.describe(), paths.state_dir, settings.interface)
        await agent.run()
        return 0

    return await serve(ds, body, log)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        ds = dsconfig.resolve(args.config)
    except (ValueError, dsconfig.ConfigError) as e:
        print(f"calico-dhcp-agent: {e}", file=sys.stderr)
        return 1
    if in_initial_netns() and os.environ.get(ALLOW_INITIAL_NETNS) != "1":
        print(f"calico-dhcp-agent: refusing to add interfaces to the machine's initial network namespace; set "
              f"{ALLOW_INITIAL_NETNS}=1 on a real compute host", file=sys.stderr)
        return 1
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s calico-dhcp-agent: %(message)s")
    return asyncio.run(_serve(args, settings, ds))


if __name__ == "__main__":
    sys.exit(main())

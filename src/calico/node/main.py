"""`calico-node`: the command a systemd unit (or the lab) runs on each host, with Calico's single-dash flags.

    calico-node                       register the Node, then supervise felix, the renderer and BIRD
    calico-node -startup              register the Node (detect addresses, check conflicts) and exit
    calico-node -felix                run Felix (calico.felix.main) in this process
    calico-node -confd                run the BGP renderer (calico.bgp.daemon) in this process
    calico-node -felix-live -felix-ready -bird-live -bird-ready
                                      health probes, combinable: exit 0 when all pass, else 1 (reasons on stderr);
                                      -bird6-live / -bird6-ready are accepted as the same BIRD checks

Exit codes: 0 success / stopped by a signal; 1 bad settings, a failed start or an unhealthy probe; Felix's
own codes under -felix (129: restart me).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from calico.node.health import CHECKS, run_checks
from calico.node.settings import NodeSettings, ProbeTargets, SettingsError

__all__ = ["main"]

EXIT_FATAL = 1
# Calico's probes for its separate IPv6 BIRD (BIRD 1.x), kept so that existing probe definitions work.
BIRD6_ALIASES = {"bird6-live": "bird-live", "bird6-ready": "bird-ready"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="calico-node", description="One host's Calico: Felix, BGP renderer, BIRD.",
                                allow_abbrev=False)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-startup", action="store_true", help="register this host's Node and exit")
    mode.add_argument("-felix", action="store_true", help="run Felix")
    mode.add_argument("-confd", action="store_true", help="run the BGP configuration renderer")
    for check in CHECKS:
        p.add_argument(f"-{check}", dest=check.replace("-", "_"), action="store_true", help=f"probe: {check}")
    for alias, check in BIRD6_ALIASES.items():
        p.add_argument(f"-{alias}", dest=check.replace("-", "_"), action="store_true",
                       help=f"the same as -{check} (BIRD 2 serves IPv4 and IPv6 in one daemon)")
    return p


def _probe(checks: list[str]) -> int:
    try:
        targets = ProbeTargets.from_env(os.environ)
    except SettingsError as e:
        print(f"calico-node: {e}", file=sys.stderr)
        return EXIT_FATAL
    results = run_checks(checks, targets.felix_host, targets.felix_port, str(targets.bird_socket))
    failed = [(check, r) for check, r in results if not r.ok]
    for check, r in failed:
        print(f"calico/node is not {'ready' if check.endswith('ready') else 'live'}: {r.reason}", file=sys.stderr)
    return EXIT_FATAL if failed else 0


def _felix() -> int:
    from calico.felix.main import main as felix_main

    return felix_main([])


def _confd() -> int:
    from calico.bgp.daemon import main as renderer_main  # imported here: only the -confd child needs it

    sys.argv = ["calico-node -confd"]
    return int(renderer_main([]) or 0)


def _log_to_stderr(level: str) -> None:
    """The same key=value lines as Felix's, so one journal reads as one format."""
    from calico.felix.logs import KeyValueFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    checks = [c for c in CHECKS if getattr(args, c.replace("-", "_"))]
    if checks:
        if args.startup or args.felix or args.confd:
            print("calico-node: probes cannot be combined with -startup, -felix or -confd", file=sys.stderr)
            return EXIT_FATAL
        return _probe(checks)
    if args.felix:
        return _felix()
    if args.confd:
        return _confd()
    try:
        settings = NodeSettings.from_env(os.environ)
    except SettingsError as e:
        print(f"calico-node: {e}", file=sys.stderr)
        return EXIT_FATAL
    _log_to_stderr(settings.log_level)
    from calico.node.daemon import run_node

    return asyncio.run(run_node(settings, dict(os.environ), startup_only=args.startup))


if __name__ == "__main__":
    sys.exit(main())

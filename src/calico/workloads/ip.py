"""The one home of `ip` and sysctl commands for namespaces Calico wires: always addressed to a named namespace.

Nothing here can touch the machine's own namespace: every command carries `-n NS` or runs under
`ip netns exec NS`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class WiringError(RuntimeError):
    """A wiring command failed; the message says which and why."""


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise WiringError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ip(ns: str, *args: str) -> None:
    """`ip -n NS ...`: never without a namespace, so the root namespace is never touched."""
    run("ip", "-n", ns, *args)


def ip_batch(ns: str, commands: list[str]) -> None:
    """Several `ip` commands in one process (`ip -n NS -batch -`): one spawn instead of one per command."""
    if not commands:
        return
    proc = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(commands) + "\n", capture_output=True,
                          text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise WiringError(f"ip -n {ns} -batch: {proc.stderr.strip() or proc.stdout.strip()}")


def sysctl(ns: str, *settings: str) -> None:
    run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings)


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def add(ns: str) -> None:
    run("ip", "netns", "add", ns)
    ip(ns, "link", "set", "lo", "up")


def delete(ns: str) -> None:
    if exists(ns):
        run("ip", "netns", "del", ns, check=False)


def exec_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]

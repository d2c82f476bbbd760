"""The lab's one home for `ip` commands: namespaces and links, always addressed to a namespace by name."""

from __future__ import annotations

import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    """A lab command failed; the message says which."""


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ip(ns: str, *args: str) -> None:
    """`ip -n NS ...`: never without a namespace, so the root namespace is never touched."""
    run("ip", "-n", ns, *args)


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

"""Snapshot of the root network namespace, to prove dataplane tests never changed it.

In: nothing (reads `nft list ruleset`, routes, link names and a few sysctls of the namespace this process
runs in, which for the test suite is the root namespace). Out: a `RootSnapshot`; `diff()` lists what differs.
Link names ignore nothing: the tests must create every link inside their own namespaces.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv6.conf.all.forwarding")


def _out(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout + (f"\n[rc={proc.returncode}] {proc.stderr.strip()}" if proc.returncode else "")


def _link_names() -> list[str]:
    names = []
    for line in _out("ip", "-o", "link", "show").splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@")[0])
    return sorted(names)


@dataclass(frozen=True)
class RootSnapshot:
    ruleset: str
    routes4: str
    routes6: str
    links: tuple[str, ...]
    sysctls: str

    @classmethod
    def take(cls) -> RootSnapshot:
        return cls(
            ruleset=_out("nft", "list", "ruleset"),
            routes4=_out("ip", "-4", "route", "show", "table", "all"),
            routes6=_out("ip", "-6", "route", "show", "table", "all"),
            links=tuple(_link_names()),
            sysctls=_out("sysctl", *SYSCTLS),
        )

    def diff(self, other: RootSnapshot) -> list[str]:
        return [
            f"root namespace {name} changed:\n--- before\n{getattr(self, name)}\n--- after\n{getattr(other, name)}"
            for name in ("ruleset", "routes4", "routes6", "links", "sysctls")
            if getattr(self, name) != getattr(other, name)
        ]

"""Calico IP sets as kernel ipsets: names, member lists and `ipset restore` text.

In: Calico IP set ids and `calico.dataplane.state.IPSet` values. Out: `IpsetSpec`s (one per address family,
so a rule of either family never names a missing set) and the text `ipset restore` reads. Pure: no I/O.

Names follow Calico's pattern, `cali40<t>:<hash>` (IPv4) / `cali60<t>:<hash>` (IPv6), t = `s` for hash:net
sets and `n` for hash:ip,port (named port) sets; the hash is 22 base64url chars, so names are 30 chars
(the kernel allows 31). A full membership replacement fills a temporary set (`cali4t<t>:<hash>`), swaps
it with the live one and destroys the temporary, so a rule never sees a half-filled set.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from calico.calculation import events as ev
from calico.dataplane.matches import named_port
from calico.dataplane.state import IPSet

MAX_ELEM = 1048576  # Felix's IpsetsMaxSize default; the kernel default (65536) is too small for big clusters
OUR_PREFIXES = ("cali40", "cali60", "cali4t", "cali6t")


@dataclass(frozen=True, slots=True)
class IpsetSpec:
    name: str
    kind: str  # "hash:net" or "hash:ip,port"
    family: int
    members: frozenset[str]

    @property
    def temp_name(self) -> str:
        return temp_name(self.name)


def _hash22(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha224(text.encode()).digest()).decode()[:22]


def set_name(set_id: str, family: int, named_port: bool = False) -> str:
    return f"cali{family}0{'n' if named_port else 's'}:{_hash22(set_id)}"


def temp_name(name: str) -> str:
    return name[:5] + "t" + name[6:]  # cali40s:... -> cali4ts:...


def is_ours(name: str) -> bool:
    return name.startswith(OUR_PREFIXES)


def _kind(name: str) -> str:
    return "hash:ip,port" if name[6] == "n" else "hash:net"


def _family(name: str) -> int:
    return int(name[4])


def empty_spec(name: str) -> IpsetSpec:
    """The empty set a rule may name before (or after) the set's members exist."""
    return IpsetSpec(name, _kind(name), _family(name), frozenset())


def net_members(members: Iterable[str], family: int) -> frozenset[str]:
    """Canonical CIDRs of one family, one per member (not merged: a one-member change stays a one-line
    delta; hash:net holds overlapping entries fine). hash:net cannot hold a /0, so it becomes two /1s."""
    out: set[str] = set()
    af, full = (socket.AF_INET, "32") if family == 4 else (socket.AF_INET6, "128")
    for m in members:
        addr, _, plen = m.strip().partition("/")
        if (":" in addr) != (family == 6):
            continue
        if not plen or plen == full:
            # Fast path for single addresses (most members): inet_pton/ntop is ~10x cheaper than ipaddress.
            try:
                packed = socket.inet_pton(af, addr)
            except OSError:
                continue  # a malformed member is skipped rather than failing the whole restore
            out.add(socket.inet_ntop(af, packed))
            continue
        try:
            net = ipaddress.ip_network(m.strip(), strict=False)
        except ValueError:
            continue
        for part in net.subnets(1) if net.prefixlen == 0 else (net,):
            out.add(str(part.network_address) if part.prefixlen == part.max_prefixlen else str(part))
    return frozenset(out)


def named_port_member(member: str, family: int) -> str | None:
    """ "198.18.0.1,tcp:8080" in canonical form, or None when malformed or of the other family."""
    np = named_port(member, family)
    return None if np is None else f"{np.ip},{np.protocol}:{np.port}"


def specs_for(set_id: str, ipset: IPSet) -> list[IpsetSpec]:
    """Both per-family kernel sets of one Calico IP set."""
    named = ipset.set_type is ev.IPSetType.IP_PORT
    out = []
    for fam in (4, 6):
        name = set_name(set_id, fam, named)
        if named:
            members = frozenset(m for x in ipset.members if (m := named_port_member(x, fam)) is not None)
        else:
            members = net_members(ipset.members, fam)
        out.append(IpsetSpec(name, _kind(name), fam, members))
    return out


def all_names(set_id: str) -> list[str]:
    return [set_name(set_id, f, n) for f in (4, 6) for n in (False, True)]


# --- restore text ---------------------------------------------------------------------------------------


def _create(name: str, kind: str, family: int) -> str:
    fam = "inet" if family == 4 else "inet6"
    return f"create {name} {kind} family {fam} maxelem {MAX_ELEM}"


def replace_lines(spec: IpsetSpec) -> list[str]:
    """Atomically give `spec.name` exactly `spec.members` (creating it if needed): fill a temp set, swap."""
    tmp = spec.temp_name
    lines = [_create(tmp, spec.kind, spec.family), f"flush {tmp}"]
    lines += [f"add {tmp} {m}" for m in sorted(spec.members)]
    lines += [_create(spec.name, spec.kind, spec.family), f"swap {tmp} {spec.name}", f"destroy {tmp}"]
    return lines


def delta_lines(old: IpsetSpec, new: IpsetSpec) -> list[str]:
    """Small membership changes in place; large ones (more than half the set) as a swap."""
    gone = old.members - new.members
    added = new.members - old.members
    if len(gone) + len(added) > max(16, len(new.members) // 2):
        return replace_lines(new)
    return [f"del {new.name} {m}" for m in sorted(gone)] + [f"add {new.name} {m}" for m in sorted(added)]


def destroy_lines(names: Iterable[str]) -> list[str]:
    return [f"destroy {n}" for n in sorted(names)]


def restore_text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def parse_list_terse(text: str) -> dict[str, int]:
    """`ipset list -t` output -> {set name: number of entries}, our sets only."""
    out: dict[str, int] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("Name: "):
            name = line[6:].strip()
        elif line.startswith("Number of entries: ") and name is not None:
            if is_ours(name):
                out[name] = int(line.split(":", 1)[1])
            name = None
    return out

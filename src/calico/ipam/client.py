"""`IPAMClient`: the IPAM API other components call (the lab, the CNI plugin, the OpenStack driver, calicoctl).

    ipam = IPAMClient(kv)
    got = await ipam.auto_assign(AutoAssignArgs(num4=1, num6=1, handle_id="lab.w1", hostname="h1",
                                                attrs={"namespace": "default", "pod": "w1"}))
    got.ipv4, got.ipv6                                  # lists of IPv4Address / IPv6Address
    await ipam.assign_ip(addr, handle_id=..., hostname=..., attrs=...)
    await ipam.release_by_handle("lab.w1")             # idempotent
    await ipam.release_ips([addr, ...])                 # returns the ones that were not allocated
    await ipam.release_node("h1")                       # a deleted node's addresses and affinities

Every call has a deadline (`timeout`, 30 s by default) for an unreachable datastore: reads are retried until
then, and a write whose answer was lost is resolved by reading (see `write.py`), so a call either reports what
it did or raises `IPAMUnavailable`. `auto_assign` is all or nothing: when fewer addresses are free than asked for,
the ones this call took are given back and `AddressesExhausted` says how many were found. A caller that gets
any exception should release the handle (as a CNI plugin does on a failed ADD); that is safe to repeat.

Secondary attributes get `node: <hostname>` when the caller does not set it: `release_node` and `ipam check`
rely on it.

What one client keeps between calls (so that a host writing into its own block needs one datastore round trip
per assignment): the blocks of the hosts it serves and the handles it wrote (only hints: every write is a
compare-and-swap, a stale copy costs one failed compare), and for `context_ttl` seconds (1 s; 0: read every
call) the IPPools, IPReservations and node labels. Each block write also compares its IPPool's revision, so a
pool that is disabled, deleted or re-selected is honoured at once; a new pool or reservation is seen within
`context_ttl`, or at once when the kept pools seem full. (Calico reads them at the start of every call, so a
change during a call is missed there too; reservations never apply to addresses already handed out.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from calico.datastore import keys
from calico.datastore.kv import KVStore
from calico.ipam import block as blk
from calico.ipam import report
from calico.ipam.assign import Assigner, Request
from calico.ipam.claim import release_affinity
from calico.ipam.errors import AddressesExhausted, InvalidConfig, IPAMError
from calico.ipam.pools import IPAddress, Reservations, block_of, block_size, pool_of
from calico.ipam.release import Expected, NodeRelease, Releaser
from calico.ipam.store import Deadline, IPAMStore
from calico.ipam.write import BlockCache, BlockWriter
from calico.resources import IPReservation, Node, WorkloadEndpoint
from calico.resources.ipam import IPAMConfig

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONTEXT_TTL = 1.0


def allocation_timestamp() -> str:
    """When an allocation was made, in the form Calico's CNI plugin records (Go's time.String(), in UTC), to the
    nanosecond: it also tells one assignment call's writes from another's (see `block.holds`)."""
    ns = time.time_ns()
    when = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return f"{when:%Y-%m-%d %H:%M:%S}.{ns % 1_000_000_000:09d} +0000 UTC"


@dataclass(frozen=True)
class AutoAssignArgs:
    num4: int = 0
    num6: int = 0
    handle_id: str = ""
    hostname: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)
    ipv4_pools: Sequence[str] | None = None  # pool names or CIDRs; None: every pool that qualifies
    ipv6_pools: Sequence[str] | None = None
    intended_use: str = "Workload"  # or "Tunnel"


@dataclass(frozen=True)
class AssignResult:
    ipv4: list[ipaddress.IPv4Address]
    ipv6: list[ipaddress.IPv6Address]


@dataclass(frozen=True)
class Assignment:
    """Who holds an address (`calicoctl ipam show --ip`)."""

    address: IPAddress
    block: str
    block_affinity: str | None
    handle_id: str | None
    attributes: Mapping[str, str]
    sequence: int | None


def as_address(value: str | IPAddress) -> IPAddress:
    return value if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) else ipaddress.ip_address(value)


class IPAMClient:
    def __init__(
        self, kv: KVStore, *, timeout: float = DEFAULT_TIMEOUT, context_ttl: float = DEFAULT_CONTEXT_TTL
    ) -> None:
        self.kv = kv
        self.timeout = timeout
        self.store = IPAMStore(kv)
        self.writer = BlockWriter(self.store, BlockCache())
        self.assigner = Assigner(self.store, self.writer, context_ttl)
        self.releaser = Releaser(self.store, self.writer)

    def _deadline(self) -> Deadline:
        return Deadline(self.timeout)

    # --- assigning -------------------------------------------------------------------------------------------

    async def auto_assign(self, args: AutoAssignArgs) -> AssignResult:
        if not args.handle_id or not args.hostname:
            raise IPAMError("auto_assign needs a handle_id and a hostname")
        if args.num4 < 0 or args.num6 < 0:
            raise IPAMError("auto_assign: num4 and num6 must not be negative")
        deadline = self._deadline()
        attrs = {"node": args.hostname, "timestamp": allocation_timestamp(), **args.attrs}
        got: dict[int, list[IPAddress]] = {4: [], 6: []}
        try:
            for version, count, pools in ((4, args.num4, args.ipv4_pools), (6, args.num6, args.ipv6_pools)):
                if count == 0:
                    continue
                req = Request(count, version, args.handle_id, args.hostname, attrs, args.intended_use, pools)
                got[version] = await self.assigner.auto_assign(req, deadline)
                if len(got[version]) < count:
                    raise AddressesExhausted(
                        f"assigned {len(got[version])} of {count} requested IPv{version} addresses for "
                        f"{args.handle_id} on {args.hostname}: the pools have no more free addresses for it"
                    )
        except IPAMError:
            # All or nothing: give back what this call took (best effort; the handle release covers the rest).
            with contextlib.suppress(IPAMError):
                await self.releaser.release_ips(got[4] + got[6], self._deadline())
            raise
        return AssignResult(got[4], got[6])  # type: ignore[arg-type]

    async def assign_ip(
        self, address: str | IPAddress, *, handle_id: str, hostname: str, attrs: Mapping[str, str] | None = None,
        intended_use: str | None = None,
    ) -> None:
        """Allocate one chosen address (claiming its block for the host when nobody has it yet); raises
        AddressInUse, AddressNotInPool, or AffinityConflict under strict affinity."""
        await self.assigner.assign_ip(as_address(address), handle_id, hostname,
                                      {"node": hostname, "timestamp": allocation_timestamp(), **(attrs or {})},
                                      intended_use, self._deadline())

    # --- releasing -------------------------------------------------------------------------------------------

    async def release_ips(
        self, addresses: Iterable[str | IPAddress], expected: Mapping[IPAddress, Expected] | None = None
    ) -> list[IPAddress]:
        """Release addresses; returns those that were not allocated. With `expected`, an address is only
        released while it still has that handle and sequence number."""
        return await self.releaser.release_ips([as_address(a) for a in addresses], self._deadline(), expected)

    async def release_by_handle(self, handle_id: str) -> list[IPAddress]:
        return await self.releaser.release_by_handle(handle_id, self._deadline())

    async def release_node(self, node: str) -> NodeRelease:
        return await self.releaser.release_node(node, self._deadline())

    async def release_affinity(self, node: str, cidr: str, *, require_empty: bool = False) -> bool:
        return await release_affinity(self.store, node, cidr, self._deadline(), require_empty=require_empty)

    # --- reading ---------------------------------------------------------------------------------------------

    async def ips_by_handle(self, handle_id: str) -> list[IPAddress]:
        deadline = self._deadline()
        handle = await self.store.handle(handle_id, deadline)
        if handle is None:
            return []
        out: list[IPAddress] = []
        for cidr in handle.value.block:
            b = await self.store.block(cidr, deadline)
            if b is not None:
                out += [blk.address_of(b.value, o) for o in blk.ordinals_of(b.value, handle_id)]
        return out

    async def assignment(self, address: str | IPAddress) -> Assignment | None:
        addr = as_address(address)
        deadline = self._deadline()
        pool = pool_of(addr, await self.store.pools(deadline))
        candidates = [str(block_of(addr, block_size(pool)))] if pool is not None else []
        found = await self.store.block(candidates[0], deadline) if candidates else None
        if found is None:  # no pool, or a block of another size
            found = next((b for b in await self.store.blocks(deadline, addr.version)
                          if blk.ordinal_of(b.value, addr) is not None), None)
        if found is None:
            return None
        b = found.value
        ordinal = blk.ordinal_of(b, addr)
        attr = None if ordinal is None else blk.attribute_at(b, ordinal)
        if attr is None or ordinal is None:
            return None
        return Assignment(addr, b.cidr, b.affinity, attr.handle_id, dict(attr.secondary),
                          b.seq_for_allocation.get(str(ordinal)))

    async def usage(self) -> list[report.PoolUsage]:
        deadline = self._deadline()
        pools, blocks, reservations = await asyncio.gather(
            self.store.pools(deadline), self.store.blocks(deadline), self.store.reservations(deadline))
        return report.usage(pools, [b.value for b in blocks], reservations)

    async def borrowed(self) -> list[report.Borrowed]:
        return report.borrowed([b.value for b in await self.store.blocks(self._deadline())])

    async def check(self) -> report.CheckReport:
        deadline = self._deadline()
        blocks, handles, affinities, pools, nodes, weps = await asyncio.gather(
            self.store.block_entries(deadline), self.store.handles(deadline), self.store.affinities(deadline),
            self.store.pools(deadline), self.store.resources(Node, deadline),
            self.store.resources(WorkloadEndpoint, deadline))
        good = [e.block.value for e in blocks if e.block is not None]
        corrupt = [e.error for e in blocks if e.block is None]
        return report.check(good, corrupt, {h: v.value for h, v in handles.items()},
                            [(a.node, a.cidr, a.record) for a in affinities], pools, nodes, weps)

    async def reservations(self) -> list[IPReservation]:
        return await self.store.resources(IPReservation, self._deadline())

    # --- configuration ---------------------------------------------------------------------------------------

    async def get_config(self) -> IPAMConfig:
        return (await self.store.config(self._deadline())).value

    async def set_config(self, config: IPAMConfig) -> None:
        if not config.strict_affinity and not config.auto_allocate_blocks:
            raise InvalidConfig("auto_allocate_blocks may only be off together with strict_affinity")
        if config.max_blocks_per_host < 0:
            raise InvalidConfig("maxBlocksPerHost must not be negative")
        await self.store.read(lambda: self.kv.put(keys.IPAM_CONFIG_KEY, config.to_json()), self._deadline(),
                              "writing the IPAM config")


__all__ = ["AssignResult", "Assignment", "AutoAssignArgs", "IPAMClient", "NodeRelease", "Reservations"]

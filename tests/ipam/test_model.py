"""Model-based: random sequences of assign / assign_ip / release / release_by_handle / release_node / strict
affinity switches, with lost write answers injected between them, against the real embedded store. After every
step the datastore must hold exactly what the model says: no address lost, none handed out twice, no reserved
address handed out automatically, handle records agreeing with the blocks.

Small pools (blocks of 8 IPv4 / 4 IPv6 addresses) so that blocks fill, hosts borrow and pools run dry often.
"""

from __future__ import annotations

import asyncio
import ipaddress
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from calico.datastore.embedded import EmbeddedKV
from calico.datastore.store import ResourceStore
from calico.ipam import (
    AddressesExhausted,
    AddressInUse,
    AffinityConflict,
    AutoAssignArgs,
    IPAMClient,
)
from calico.resources.ipam import IPAMConfig
from tests.helpers.lossy_kv import LossyKV
from tests.ipam.util import allocations as stored_allocations
from tests.ipam.util import resource

# Shrinking a failure can take minutes on a busy machine: report it rather than time out half-way.
pytestmark = pytest.mark.timeout(600)

POOL4 = ipaddress.ip_network("198.18.0.0/27")  # 4 blocks of /29
POOL6 = ipaddress.ip_network("fd00:1::/125")  # 2 blocks of /126
RESERVED = ipaddress.ip_address("198.18.0.5")
HOSTS = ["h1", "h2", "h3"]
HANDLES = [f"w{i}" for i in range(8)]
ADDRESSES = [*POOL4, *POOL6]


class IPAMModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory(prefix="calico-ipam-model-")
        self.real = self.run(EmbeddedKV.open(str(Path(self.tmp.name) / "kv.db")))
        self.kv = LossyKV(self.real)
        store = ResourceStore(self.real)
        self.run(store.create(resource("IPPool", "v4", {"cidr": str(POOL4), "blockSize": 29})))
        self.run(store.create(resource("IPPool", "v6", {"cidr": str(POOL6), "blockSize": 126})))
        self.run(store.create(resource("IPReservation", "r", {"reservedCIDRs": [str(RESERVED)]})))
        self.clients = {h: IPAMClient(self.kv, timeout=5) for h in HOSTS}  # one client per host, as in life
        self.held: dict[str, tuple[str, str]] = {}  # address -> (handle, host)

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.kv.close())
        self.loop.close()
        self.tmp.cleanup()

    @rule(host=st.sampled_from(HOSTS), handle=st.sampled_from(HANDLES), n4=st.integers(0, 3), n6=st.integers(0, 2))
    def auto_assign(self, host: str, handle: str, n4: int, n6: int) -> None:
        try:
            got = self.run(self.clients[host].auto_assign(
                AutoAssignArgs(num4=n4, num6=n6, handle_id=handle, hostname=host)))
        except AddressesExhausted:
            return
        addrs = [str(a) for a in [*got.ipv4, *got.ipv6]]
        assert len(got.ipv4) == n4 and len(got.ipv6) == n6
        for a in addrs:
            assert a not in self.held, f"{a} handed out twice"
            assert ipaddress.ip_address(a) != RESERVED
            self.held[a] = (handle, host)

    @rule(host=st.sampled_from(HOSTS), handle=st.sampled_from(HANDLES), addr=st.sampled_from(ADDRESSES))
    def assign_ip(self, host: str, handle: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        try:
            self.run(self.clients[host].assign_ip(addr, handle_id=handle, hostname=host))
        except AddressInUse:
            assert str(addr) in self.held
            return
        except AffinityConflict:
            assert self.strict
            return
        assert str(addr) not in self.held
        self.held[str(addr)] = (handle, host)

    @rule(host=st.sampled_from(HOSTS), picks=st.lists(st.sampled_from(ADDRESSES), max_size=4))
    def release_ips(self, host: str, picks: list[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> None:
        missing = self.run(self.clients[host].release_ips(picks))
        assert sorted(map(str, missing)) == sorted({str(a) for a in picks if str(a) not in self.held})
        for a in picks:
            self.held.pop(str(a), None)

    @rule(host=st.sampled_from(HOSTS), handle=st.sampled_from(HANDLES))
    def release_by_handle(self, host: str, handle: str) -> None:
        released = self.run(self.clients[host].release_by_handle(handle))
        mine = {a for a, (h, _) in self.held.items() if h == handle}
        assert {str(a) for a in released} == mine
        for a in mine:
            del self.held[a]

    @rule(host=st.sampled_from(HOSTS), node=st.sampled_from(HOSTS))
    def release_node(self, host: str, node: str) -> None:
        result = self.run(self.clients[host].release_node(node))
        theirs = {a for a, (_, n) in self.held.items() if n == node}
        assert {str(a) for a in result.addresses} == theirs
        for a in theirs:
            del self.held[a]

    strict = False

    @rule(strict=st.booleans())
    def set_strict_affinity(self, strict: bool) -> None:
        self.run(self.clients["h1"].set_config(IPAMConfig(strict_affinity=strict)))
        self.strict = strict

    @precondition(lambda self: not self.kv.faults)
    @rule(kinds=st.lists(st.sampled_from(["after", "before", "late"]), min_size=1, max_size=3))
    def lose_answers(self, kinds: list[str]) -> None:
        self.kv.faults = list(kinds)

    @invariant()
    def datastore_matches_the_model(self) -> None:
        self.run(self.kv.settle())
        stored = self.run(stored_allocations(self.real))
        assert stored == {a: h for a, (h, _) in self.held.items()}


IPAMModel.TestCase.settings = settings(
    max_examples=75, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ipam_model = IPAMModel.TestCase

"""The agent's loop on a real embedded datastore with the in-memory interface and dnsmasq: what is restarted,
what is only reloaded, and that bad data never stops it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from calico.datastore.embedded import EmbeddedKV
from calico.dhcp.agent import DhcpAgent
from calico.dhcp.dnsmasq import FakeDnsmasq
from calico.dhcp.interface import FakeGatewayInterface
from calico.dhcp.render import Paths, Settings
from tests.felix.util import wait_until
from tests.unit.dhcp.builders import (
    REGION,
    endpoint_doc,
    endpoint_key,
    endpoint_update,
    neutron_port,
    neutron_subnet,
    subnet_key,
    subnet_update,
)

S4 = neutron_subnet("s4", "198.18.20.0/24", "198.18.20.1", dns_nameservers=["198.18.0.53"])
S4B = neutron_subnet("s4b", "198.18.21.0/24", "198.18.21.1")
P1 = neutron_port("11111111-aaaa", "fa:16:3e:00:00:01", [("s4", "198.18.20.5")])
P2 = neutron_port("22222222-bbbb", "fa:16:3e:00:00:02", [("s4", "198.18.20.6")])


@dataclass
class Running:
    kv: EmbeddedKV
    agent: DhcpAgent
    dnsmasq: FakeDnsmasq
    iface: FakeGatewayInterface
    paths: Paths

    async def put(self, update) -> None:  # type: ignore[no-untyped-def]
        await self.kv.put(update.key, update.value)

    def hosts(self) -> str:
        return self.paths.hosts.read_text()


@contextlib.asynccontextmanager
async def running(tmp_path: Path, iface: FakeGatewayInterface | None = None) -> AsyncIterator[Running]:
    kv = await EmbeddedKV.open(str(tmp_path / "kv.db"))
    paths = Paths(tmp_path / "state")
    paths.state_dir.mkdir()
    dnsmasq, iface = FakeDnsmasq(), iface or FakeGatewayInterface()
    agent = DhcpAgent(kv, "h1", REGION, Settings(), paths, iface, dnsmasq, debounce=0.01, retry_interval=0.05)
    task = asyncio.create_task(agent.run())
    try:
        yield Running(kv, agent, dnsmasq, iface, paths)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await kv.close()


async def test_start_of_day_one_start_then_hosts_reload_and_subnets_restart(tmp_path: Path):
    async with running(tmp_path) as r:
        await r.put(subnet_update(S4))
        await r.put(endpoint_update(P1))
        await wait_until(lambda: len(r.dnsmasq.starts) == 1, what="dnsmasq started")
        assert r.iface.addresses == {"198.18.20.1/24"}
        assert r.hosts() == "fa:16:3e:00:00:01,198.18.20.5\n"
        assert "--dhcp-range=set:subnet-s4,198.18.20.0,static,255.255.255.0,86400s" in r.dnsmasq.starts[0]

        await r.put(endpoint_update(P2))  # a second port: files rewritten, SIGHUP, no restart
        await wait_until(lambda: r.dnsmasq.reloads == 1, what="reload")
        assert r.hosts() == "fa:16:3e:00:00:01,198.18.20.5\nfa:16:3e:00:00:02,198.18.20.6\n"
        assert len(r.dnsmasq.starts) == 1

        await r.kv.delete(endpoint_key(endpoint_doc(P1)))  # a removed port: its MAC leaves the hosts file
        await wait_until(lambda: r.dnsmasq.reloads == 2, what="reload")
        assert r.hosts() == "fa:16:3e:00:00:02,198.18.20.6\n"

        await r.put(subnet_update(S4B))  # a new subnet: new range and address, so a restart
        await wait_until(lambda: len(r.dnsmasq.starts) == 2, what="restart")
        assert r.iface.addresses == {"198.18.20.1/24", "198.18.21.1/24"}

        await r.kv.delete(subnet_key("s4"))
        await r.kv.delete(subnet_key("s4b"))  # nothing left to serve: dnsmasq stopped, interface removed
        await wait_until(lambda: not r.iface.exists, what="interface removed")
        assert r.dnsmasq.pid is None and r.agent.applied is None


async def test_options_change_is_a_reload(tmp_path: Path):
    async with running(tmp_path) as r:
        await r.put(subnet_update(S4))
        await wait_until(lambda: len(r.dnsmasq.starts) == 1, what="dnsmasq started")
        await r.put(subnet_update({**S4, "dns_nameservers": ["198.18.0.54"]}))
        await wait_until(lambda: r.dnsmasq.reloads == 1, what="reload")
        assert "option:dns-server,198.18.0.54" in r.paths.opts.read_text()
        assert len(r.dnsmasq.starts) == 1


async def test_bad_records_are_skipped_and_the_agent_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    async with running(tmp_path) as r:
        await r.kv.put(subnet_key("bad"), b"{not json")
        bad_wep = endpoint_doc(P2)
        bad_wep["spec"]["ipNetworks"] = ["nonsense"]
        await r.kv.put(endpoint_key(bad_wep), json.dumps(bad_wep).encode())
        await r.put(subnet_update(S4))
        await r.put(endpoint_update(P1))
        await wait_until(lambda: len(r.dnsmasq.starts) == 1 and "198.18.20.5" in r.hosts(), what="served")
        assert r.hosts() == "fa:16:3e:00:00:01,198.18.20.5\n"
        assert f"{subnet_key('bad')}: stored value is not JSON" in caplog.text
        assert f"ignoring bad WorkloadEndpoint at {endpoint_key(bad_wep)}" in caplog.text


async def test_nothing_is_written_before_in_sync_and_interface_failures_are_retried(tmp_path: Path):
    iface = FakeGatewayInterface(fail=True)
    async with running(tmp_path, iface) as r:
        await r.put(subnet_update(S4))
        await wait_until(lambda: iface.calls.count("ensure") >= 2, what="retries")
        assert r.dnsmasq.starts == []  # never started without its addresses
        iface.fail = False
        await wait_until(lambda: len(r.dnsmasq.starts) == 1, what="started after the interface worked")
        assert iface.addresses == {"198.18.20.1/24"}


async def test_first_apply_with_no_subnets_removes_a_leftover_interface(tmp_path: Path):
    iface = FakeGatewayInterface()
    iface.exists = True  # as an earlier run left it
    async with running(tmp_path, iface):
        await wait_until(lambda: iface.calls == ["remove"], what="removed")

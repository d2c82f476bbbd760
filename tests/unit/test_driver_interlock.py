"""Building the dataplane: the agent refuses to program the machine's initial network namespace unless told it
is a real host; the firewall backend is chosen in one place (`factory`), and a missing one is a clear error."""

from __future__ import annotations

import pytest

from calico.dataplane import factory
from calico.dataplane.config import DataplaneConfig
from calico.dataplane.iptables.backend import IptablesBackend
from calico.felix.metrics import FelixMetrics


def test_refuses_initial_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(factory.ALLOW_INITIAL_NETNS, raising=False)
    monkeypatch.setattr(factory, "in_initial_netns", lambda: True)
    built: list[str] = []
    monkeypatch.setattr(factory, "firewall_factory", lambda backend: lambda c, n: built.append("firewall"))
    with pytest.raises(RuntimeError, match="refusing to program"):
        factory.create_driver(DataplaneConfig())
    assert built == []  # nothing was constructed, let alone programmed


def test_this_test_process_is_detected_in_initial_namespace() -> None:
    # pytest runs in the machine's own namespace here; the check must see that (the lab runs felix elsewhere).
    assert factory.in_initial_netns()


def test_the_backend_is_chosen_by_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from calico.dataplane.nftables import backend as nft_backend

    assert factory.firewall_factory("nftables") is nft_backend.create_firewall  # (it would enter the namespace)
    ipt = factory.firewall_factory("iptables")(DataplaneConfig(iptables_flavour="legacy"), "ns1")
    assert isinstance(ipt, IptablesBackend) and ipt.restore_cmd[4] == "iptables-legacy-restore"
    with pytest.raises(factory.BackendUnavailable, match="unknown dataplane backend 'bpf'"):
        factory.firewall_factory("bpf")
    monkeypatch.setitem(factory.FIREWALL_MODULES, "iptables", "calico.dataplane.no_such_backend")
    with pytest.raises(factory.BackendUnavailable, match="'iptables' is not available: cannot import"):
        factory.create_driver(DataplaneConfig(backend="iptables"), "ns1")
    monkeypatch.setitem(factory.FIREWALL_MODULES, "iptables", "calico.dataplane.config")
    with pytest.raises(factory.BackendUnavailable, match="has no create_firewall"):
        factory.firewall_factory("iptables")


def test_bad_config_values_name_the_field() -> None:
    from calico.dataplane.config import FailsafePort, MetadataTarget

    for kw, field in (
        ({"backend": "bpf"}, "backend"),
        ({"interface_prefixes": ()}, "interface_prefixes"),
        ({"interface_prefixes": ("cali", 'ta"p')}, "interface_prefixes"),
        ({"endpoint_to_host_action": "Allow"}, "endpoint_to_host_action"),
        ({"failsafe_inbound": (FailsafePort("icmp", 1),)}, "failsafe_inbound"),
        ({"failsafe_outbound": (FailsafePort("tcp", 70000),)}, "failsafe_outbound"),
        ({"failsafe_outbound": (FailsafePort("tcp", 1, "10.0.0.1/8"),)}, "failsafe_outbound"),
        ({"metadata": MetadataTarget("metadata.example", 80)}, "metadata"),
        ({"metadata": MetadataTarget("10.0.0.1", 0)}, "metadata"),
        ({"route_refresh_interval": -1.0}, "route_refresh_interval"),
    ):
        with pytest.raises(ValueError, match=f"DataplaneConfig.{field}: "):
            DataplaneConfig(**kw)  # type: ignore[arg-type]


@pytest.mark.heavy
def test_named_namespace_is_not_initial(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import secrets
    import subprocess
    import sys

    ns = f"cnt-{secrets.token_hex(3)}-ilk"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        code = "from calico.dataplane.factory import in_initial_netns as f; print(f())"
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == "False"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


async def test_driver_feeds_tool_calls_to_metrics_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    from calico.dataplane import process

    monkeypatch.setattr(factory, "firewall_factory", lambda backend: lambda c, n: object())
    metrics = FelixMetrics()
    d = factory.create_driver(DataplaneConfig(), "not-used-here", tool_observer=metrics.observe_tool)
    d.routes = None  # never started: nothing to stop
    process.report("/usr/sbin/ipset", 0.001, False)
    assert metrics.ipset_calls.value() == 1 and metrics.ipset_errors.value() == 1
    await d.stop()
    process.report("ipset", 0.001, True)
    assert metrics.ipset_calls.value() == 1  # unhooked with the driver

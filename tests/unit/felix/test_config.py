"""Felix parameters: defaults, the five sources and their precedence, parsing, bad values, diffs."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from calico.dataplane.config import DEFAULT_MTU_IFACE_PATTERN, DataplaneConfig, MetadataTarget
from calico.felix import config as c
from calico.felix.config import ConfigError, FailsafePort, FelixConfig, Source
from calico.resources.felixconfig import FelixConfigurationSpec


def test_defaults_match_calico() -> None:
    cfg = FelixConfig.load({}, None)
    assert cfg.felix_hostname  # socket.gethostname()
    assert cfg.log_severity_screen == "Info"
    assert cfg.interface_prefix == "cali"
    assert cfg.default_endpoint_to_host_action == "Drop"
    assert (cfg.iptables_refresh_interval, cfg.route_refresh_interval, cfg.ipsets_refresh_interval) == (90, 90, 90)
    assert (cfg.reporting_interval_secs, cfg.reporting_ttl_secs) == (30, 90)
    assert (cfg.endpoint_reporting_enabled, cfg.endpoint_reporting_delay_secs) == (False, 1)
    assert (cfg.health_enabled, cfg.health_host, cfg.health_port) == (False, "localhost", 9099)
    assert (cfg.prometheus_metrics_enabled, cfg.prometheus_metrics_host, cfg.prometheus_metrics_port) == (
        False, "", 9091)
    assert [f"{p.protocol}:{p.port}" for p in cfg.failsafe_inbound_host_ports] == [
        "tcp:22", "udp:68", "tcp:179", "tcp:2379", "tcp:2380", "tcp:5473", "tcp:6443", "tcp:6666", "tcp:6667"]
    assert [f"{p.protocol}:{p.port}" for p in cfg.failsafe_outbound_host_ports] == [
        "udp:53", "udp:67", "tcp:179", "tcp:2379", "tcp:2380", "tcp:5473", "tcp:6443", "tcp:6666", "tcp:6667"]
    assert (cfg.metadata_addr, cfg.metadata_port) == ("127.0.0.1", 8775)
    assert cfg.ipv6_support is True
    assert cfg.chain_insert_mode == "Insert"
    assert cfg.dataplane_backend == "nftables"
    assert cfg.status_region == "no-region"
    assert set(cfg.sources.values()) == {Source.DEFAULT}


def test_every_datastore_name_is_a_felixconfiguration_field() -> None:
    fields = FelixConfigurationSpec.model_fields
    for p in c.PARAMS.values():
        assert p.spec is None or p.spec in fields, p


def _spec(**kw: object) -> dict:
    return c.parse_datastore_spec(kw, "test")


def test_precedence_env_file_node_global_default(tmp_path: Path) -> None:
    cfg_file = tmp_path / "felix.cfg"
    cfg_file.write_text("[global]\nHealthPort = 2000\nhealthhost = 10.0.0.2\nMetadataPort = 2001\n")
    local = FelixConfig.load({"FELIX_HEALTHPORT": "1000"}, str(cfg_file))
    cfg = local.with_datastore(
        _spec(healthPort=4000, healthHost="g", metadataPort=4001, prometheusMetricsPort=4002, ipv6Support=False),
        _spec(healthPort=3000, healthHost="n", metadataPort=3001, prometheusMetricsPort=3002),
    )
    assert cfg.health_port == 1000 and cfg.sources["HealthPort"] == Source.ENV
    assert cfg.health_host == "10.0.0.2" and cfg.sources["HealthHost"] == Source.CONFIG_FILE
    assert cfg.metadata_port == 2001
    assert cfg.prometheus_metrics_port == 3002 and cfg.sources["PrometheusMetricsPort"] == Source.DATASTORE_NODE
    assert cfg.ipv6_support is False and cfg.sources["IPv6Support"] == Source.DATASTORE_GLOBAL
    assert cfg.log_severity_screen == "Info" and cfg.sources["LogSeverityScreen"] == Source.DEFAULT
    # Re-merging replaces the datastore layers and keeps the local ones.
    again = cfg.with_datastore(None, None)
    assert (again.health_port, again.prometheus_metrics_port, again.ipv6_support) == (1000, 9091, True)


def test_env_names_are_case_insensitive_and_hostname_alias() -> None:
    cfg = FelixConfig.load({"FELIX_hostname": "node7", "FELIX_INTERFACEPREFIX": "tap", "OTHER": "x"}, None)
    assert cfg.hostname == "node7" and cfg.interface_prefix == "tap"
    assert FelixConfig.load({"FELIX_FELIXHOSTNAME": "n8"}, None).hostname == "n8"


def test_local_only_params_are_not_taken_from_the_datastore() -> None:
    assert _spec(felixHostname="x", dataplaneBackend="iptables", datastoreType="etcdv3") == {}


def test_parsing_per_type() -> None:
    env = {
        "FELIX_HEALTHENABLED": "yes",
        "FELIX_IPV6SUPPORT": "0",
        "FELIX_IPTABLESREFRESHINTERVAL": "1m30s",
        "FELIX_ROUTEREFRESHINTERVAL": "0.5",
        "FELIX_REPORTINGINTERVALSECS": "15",
        "FELIX_DEFAULTENDPOINTTOHOSTACTION": "accept",
        "FELIX_LOGSEVERITYSCREEN": "WARN",
        "FELIX_CHAININSERTMODE": "append",
        "FELIX_FAILSAFEINBOUNDHOSTPORTS": "tcp:22, udp:10.0.0.0/8:68, 179, sctp:[fd00::/8]:9",
        "FELIX_FAILSAFEOUTBOUNDHOSTPORTS": "none",
        "FELIX_LOGFILEPATH": "None",
    }
    cfg = FelixConfig.load(env, None)
    assert cfg.health_enabled is True and cfg.ipv6_support is False
    assert (cfg.iptables_refresh_interval, cfg.route_refresh_interval, cfg.reporting_interval_secs) == (90, 0.5, 15)
    assert cfg.default_endpoint_to_host_action == "Accept"
    assert cfg.log_severity_screen == "Warning"
    assert cfg.chain_insert_mode == "Append"
    assert cfg.failsafe_inbound_host_ports == (
        FailsafePort("tcp", 22), FailsafePort("udp", 68, "10.0.0.0/8"), FailsafePort("tcp", 179),
        FailsafePort("sctp", 9, "fd00::/8"),
    )
    assert cfg.failsafe_outbound_host_ports == ()
    assert cfg.log_file_path == ""


def test_datastore_value_forms() -> None:
    spec = _spec(
        reportingInterval="1m0s",
        iptablesRefreshInterval="10s",
        failsafeInboundHostPorts=[{"protocol": "TCP", "port": 22}, {"protocol": "UDP", "port": 53, "net": "198.18.0.0/15"}],
        logSeverityScreen="Debug",
        endpointReportingEnabled=True,
        bpfEnabled=True,  # a Calico field we do not implement: ignored
    )
    assert spec == {
        "ReportingIntervalSecs": 60.0,
        "IptablesRefreshInterval": 10.0,
        "FailsafeInboundHostPorts": (FailsafePort("tcp", 22), FailsafePort("udp", 53, "198.18.0.0/15")),
        "LogSeverityScreen": "Debug",
        "EndpointReportingEnabled": True,
    }


@pytest.mark.parametrize(
    ("var", "text"),
    [
        ("FELIX_HEALTHPORT", "abc"),
        ("FELIX_HEALTHPORT", "70000"),
        ("FELIX_HEALTHENABLED", "maybe"),
        ("FELIX_IPTABLESREFRESHINTERVAL", "-5"),
        ("FELIX_IPTABLESREFRESHINTERVAL", "soon"),
        ("FELIX_FAILSAFEINBOUNDHOSTPORTS", "icmp:1"),
        ("FELIX_FAILSAFEINBOUNDHOSTPORTS", "tcp:notanet:22"),
        ("FELIX_DEFAULTENDPOINTTOHOSTACTION", "Allow"),
        ("FELIX_DATAPLANEBACKEND", "bpf"),
        ("FELIX_INTERFACEPREFIX", "cali,ta p"),
        ("FELIX_INTERFACEPREFIX", "cali,"),
    ],
)
def test_bad_env_value_names_source_and_parameter(var: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        FelixConfig.load({var: text}, None)
    msg = str(err.value)
    assert f"environment variable {var}" in msg
    assert repr(text) in msg
    assert c.PARAMS[c._BY_LOWER[var[6:].lower()]].name in msg


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cfg"
    bad.write_text("[global]\nReportingTTLSecs = forever\n")
    with pytest.raises(ConfigError, match=r"bad.cfg \[global\] reportingttlsecs: invalid value 'forever' for ReportingTTLSecs"):
        FelixConfig.load({}, str(bad))
    missing = str(tmp_path / "nope.cfg")
    with pytest.raises(ConfigError, match="does not exist"):
        FelixConfig.load({}, missing, config_file_required=True)
    assert FelixConfig.load({}, missing).health_port == 9099  # the default path may be absent
    garbage = tmp_path / "garbage.cfg"
    garbage.write_text("no section here\n")
    with pytest.raises(ConfigError, match="not an INI file"):
        FelixConfig.load({}, str(garbage))


def test_config_file_unknown_key_and_other_sections(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "felix.cfg"
    f.write_text("[global]\nNoSuchThing = 1\nLogSeverityScreen = debug\n[other]\nHealthPort = x\n")
    with caplog.at_level(logging.WARNING):
        cfg = FelixConfig.load({}, str(f))
    assert cfg.log_severity_screen == "Debug"
    assert "nosuchthing" in caplog.text


def test_bad_datastore_value_is_logged_and_falls_through(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        node = _spec(healthPort="nine", reportingTTL="3s")
        glob = _spec(healthPort=1234)
    cfg = FelixConfig.load({}, None).with_datastore(glob, node)
    assert cfg.health_port == 1234 and cfg.reporting_ttl_secs == 3
    assert "HealthPort" in caplog.text and "nine" in caplog.text


def test_parse_datastore_value() -> None:
    doc = {"kind": "FelixConfiguration", "metadata": {"name": "default"}, "spec": {"interfacePrefix": "tap"}}
    assert c.parse_datastore_value(json.dumps(doc).encode(), "x") == {"InterfacePrefix": "tap"}
    assert c.parse_datastore_value(b'{"kind": "FelixConfiguration"}', "x") == {}
    assert c.parse_datastore_value(b"\xff{not json", "x") is None
    assert c.parse_datastore_value(b'{"spec": [1]}', "x") is None


def test_diff_and_restart_needed() -> None:
    base = FelixConfig.load({}, None)
    live = base.with_datastore(_spec(reportingInterval="5s", logSeverityScreen="Debug"), None)
    changes = c.diff(base, live)
    assert changes == {"ReportingIntervalSecs": (30.0, 5.0), "LogSeverityScreen": ("Info", "Debug")}
    assert c.restart_needed(changes) == []
    restart = live.with_datastore(None, _spec(interfacePrefix="tap", nftablesMode="Disabled"))
    assert c.restart_needed(c.diff(live, restart)) == ["InterfacePrefix", "NFTablesMode"]
    assert c.diff(base, FelixConfig.load({}, None).with_datastore({}, {})) == {}


def test_backend_choice() -> None:
    assert FelixConfig.load({}, None).with_datastore(_spec(nftablesMode="Disabled"), None).dataplane_backend == "iptables"
    assert FelixConfig.load({}, None).with_datastore(_spec(nftablesMode="Enabled"), None).dataplane_backend == "nftables"
    over = FelixConfig.load({"FELIX_DATAPLANEBACKEND": "iptables"}, None)
    assert over.with_datastore(_spec(nftablesMode="Enabled"), None).dataplane_backend == "iptables"


def test_dataplane_config_is_built_once_from_the_parameters() -> None:
    dp = FelixConfig.load({"FELIX_ETCDPASSWORD": "secret"}, None).dataplane_config()
    # Felix's defaults are the dataplane's, but the MTU file: Felix writes Calico's, the dataplane none unless told.
    assert dp == DataplaneConfig(mtu_file="/var/lib/calico/mtu")
    cfg = FelixConfig.load({
        "FELIX_INTERFACEPREFIX": " cali , tap ", "FELIX_DATAPLANEBACKEND": "iptables", "FELIX_IPTABLESBACKEND": "legacy",
        "FELIX_DEFAULTENDPOINTTOHOSTACTION": "return", "FELIX_FAILSAFEINBOUNDHOSTPORTS": "udp:10.0.0.0/8:68",
        "FELIX_FAILSAFEOUTBOUNDHOSTPORTS": "none", "FELIX_ROUTEREFRESHINTERVAL": "5", "FELIX_IPV6SUPPORT": "false",
        "FELIX_FELIXHOSTNAME": "h1", "FELIX_VXLANENABLED": "true", "FELIX_VXLANPORT": "8472", "FELIX_VXLANVNI": "1",
        "FELIX_VXLANMTU": "1400", "FELIX_VXLANMTUV6": "1380", "FELIX_IPINIPENABLED": "false", "FELIX_IPINIPMTU": "1480",
        "FELIX_NATOUTGOINGADDRESS": "198.19.0.1", "FELIX_MTUIFACEPATTERN": "^eth0$", "FELIX_MTUFILEPATH": "none",
    }, None)
    assert cfg.interface_prefix == "cali,tap"
    assert cfg.dataplane_config() == DataplaneConfig(
        backend="iptables", iptables_flavour="legacy", interface_prefixes=("cali", "tap"),
        endpoint_to_host_action="Return", failsafe_inbound=(FailsafePort("udp", 68, "10.0.0.0/8"),),
        failsafe_outbound=(), metadata=MetadataTarget("127.0.0.1", 8775),  # "tap": OpenStack, metadata DNAT on
        route_refresh_interval=5.0, ipv6_support=False, hostname="h1", vxlan_enabled=True, vxlan_port=8472,
        vxlan_vni=1, vxlan_mtu=1400, vxlan_mtu_v6=1380, ipip_enabled=False, ipip_mtu=1480,
        nat_outgoing_address="198.19.0.1", mtu_iface_pattern="^eth0$", mtu_file=None)
    assert "secret" not in repr(FelixConfig.load({"FELIX_ETCDPASSWORD": "secret"}, None))


def test_network_parameters_from_the_datastore_and_bad_values(caplog: pytest.LogCaptureFixture) -> None:
    """Calico's FelixConfiguration fields; a bad datastore value is ignored (logged), a bad local one refused."""
    cfg = FelixConfig.load({}, None).with_datastore(
        _spec(vxlanEnabled=False, vxlanVNI=77, vxlanMTU=1300, ipipEnabled=True, ipipMTU=1400,
              natOutgoingAddress="198.19.9.9", mtuIfacePattern="^ens"), None)
    dp = cfg.dataplane_config()
    assert (dp.vxlan_enabled, dp.vxlan_vni, dp.vxlan_mtu, dp.ipip_enabled, dp.ipip_mtu) == (False, 77, 1300, True, 1400)
    assert (dp.nat_outgoing_address, dp.mtu_iface_pattern) == ("198.19.9.9", "^ens")
    assert FelixConfig.load({}, None).dataplane_config().vxlan_enabled is None  # auto, from the pools
    with caplog.at_level(logging.WARNING):
        bad = FelixConfig.load({}, None).with_datastore(
            _spec(vxlanVNI=0, natOutgoingAddress="fd00:1::1", mtuIfacePattern="(", vxlanPort=70000), None)
    assert (bad.vxlan_vni, bad.nat_outgoing_address, bad.vxlan_port) == (4096, None, 4789)
    assert bad.mtu_iface_pattern == DEFAULT_MTU_IFACE_PATTERN
    assert "vxlanVNI" in caplog.text and "natOutgoingAddress" in caplog.text and "mtuIfacePattern" in caplog.text
    with pytest.raises(c.ConfigError, match=r"FELIX_NATOUTGOINGADDRESS.*NATOutgoingAddress"):
        FelixConfig.load({"FELIX_NATOUTGOINGADDRESS": "not-an-ip"}, None)
    with pytest.raises(c.ConfigError, match="VXLANVNI"):
        FelixConfig.load({"FELIX_VXLANVNI": "16777216"}, None)


def test_metadata_dnat_only_with_openstack_and_an_ipv4_address(caplog: pytest.LogCaptureFixture) -> None:
    def target(**env: str) -> MetadataTarget | None:
        return FelixConfig.load({f"FELIX_{k.upper()}": v for k, v in env.items()}, None).dataplane_config().metadata

    assert target() is None  # not OpenStack: no DNAT (Felix's rule)
    assert not FelixConfig.load({}, None).openstack_active
    assert target(openstackRegion="r1") == MetadataTarget("127.0.0.1", 8775)
    assert target(interfacePrefix="tap") == MetadataTarget("127.0.0.1", 8775)
    assert target(metadataAddr="10.1.2.3") == MetadataTarget("10.1.2.3", 8775)
    assert target(metadataPort="9999") == MetadataTarget("127.0.0.1", 9999)
    assert target(metadataAddr="None") is None
    with caplog.at_level(logging.WARNING):
        assert target(metadataAddr="metadata.example") is None  # not resolved here: no DNAT, and said so
        assert target(metadataAddr="fd00:1::1") is None  # the metadata API is IPv4-only
    assert "metadata.example" in caplog.text and "no metadata DNAT" in caplog.text


def test_every_live_parameter_leaves_the_dataplane_config_alone() -> None:
    """The driver is built from dataplane_config() once: a change it would see must restart Felix."""
    base = FelixConfig.load({}, None)
    live = [p for p in c.PARAMS.values() if not p.restart]
    assert live  # log levels, reporting, refresh intervals
    for p in live:
        old = getattr(base, p.attr)
        new: object = (not old if isinstance(old, bool) else old + 1.0 if isinstance(old, float)
                       else "Debug" if old != "Debug" else "Error")
        changed = dataclasses.replace(base, **{p.attr: new})
        assert c.diff(base, changed) and c.restart_needed(c.diff(base, changed)) == []
        assert changed.dataplane_config() == base.dataplane_config(), p.name


def test_datastore_config_from_felix_and_calicoctl_variables(tmp_path: Path) -> None:
    cfg = FelixConfig.load({"FELIX_DATASTORETYPE": "etcdv3", "FELIX_ETCDENDPOINTS": "http://127.0.0.1:2379"}, None)
    ds = cfg.datastore_config({})
    assert ds.datastore_type == "etcdv3" and ds.etcd_endpoints == ["http://127.0.0.1:2379"]
    plain = FelixConfig.load({}, None)
    ds = plain.datastore_config({"CALICO_EMBEDDED_PATH": str(tmp_path / "x.db")})
    assert ds.datastore_type == "embedded" and ds.embedded_path == str(tmp_path / "x.db")
    with pytest.raises(ConfigError, match="datastore"):
        FelixConfig.load({"FELIX_DATASTORETYPE": "etcdv3"}, None).datastore_config({})

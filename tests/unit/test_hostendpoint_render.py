"""Unit tests for host endpoint, failsafe and metadata rendering in both backends (pure; one nft -c check)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess

import pytest

from calico.calculation import events as ev
from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import DataplaneConfig, FailsafePort, MetadataTarget
from calico.dataplane.iptables import model as ipt_model
from calico.dataplane.iptables import names as ipt_names
from calico.dataplane.iptables import nat as ipt_nat
from calico.dataplane.iptables import side as ipt_side
from calico.dataplane.iptables import table as ipt_table
from calico.dataplane.iptables import text as ipt_text
from calico.dataplane.iptables.plan import Planner as IptPlanner
from calico.dataplane.iptables.plan import plan_full
from calico.dataplane.nftables import names as nft_names
from calico.dataplane.nftables import table as nft_table
from calico.dataplane.nftables import text as nft_text
from calico.dataplane.nftables.diff import Planner as NftPlanner
from calico.dataplane.state import DesiredState

P = ev.PolicyID("default", "hp")


def hep(name: str, iface: str | None, tiers=(), fwd=(), profiles=()) -> ev.HostEndpointUpdate:
    return ev.HostEndpointUpdate(name, iface, (), tuple(tiers), (), (), tuple(fwd), tuple(profiles))


def state(*events: object, **config: object) -> DesiredState:
    s = DesiredState(DataplaneConfig(**config))  # type: ignore[arg-type]
    s.apply_all([*events, ev.InSync()])  # type: ignore[list-item]
    return s


POLICY = ev.PolicyUpdate(P, (ev.RenderedRule("Allow", "r1", protocol="TCP", dst_ports=((8080, 8080),)),), ())
TIER = ev.TierInfo("default", "Deny", (P,), ())


def test_failsafes_group_into_one_rule_per_protocol_and_net() -> None:
    fs = (FailsafePort("tcp", 22), FailsafePort("udp", 68, "10.0.0.0/8"), FailsafePort("tcp", 5, "fd00::/8"),
          FailsafePort("tcp", 179))
    assert hepm.grouped_ports(fs, 4) == [("tcp", None, [22, 179]), ("udp", "10.0.0.0/8", [68])]  # v6 net left out
    assert hepm.grouped_ports(fs, 6) == [("tcp", None, [22, 179]), ("tcp", "fd00::/8", [5])]


def test_active_host_endpoints_one_per_interface_wildcard_last() -> None:
    s = state(hep("z", "*"), hep("b", "eth1"), hep("a", "eth1"), hep("c", None), hep("d", "eth0"))
    assert [(h.name, h.iface) for h in hepm.active_host_endpoints(s)] == [("d", "eth0"), ("a", "eth1"), ("z", "*")]


def test_host_endpoints_by_expected_ips_resolve_through_interface_addresses() -> None:
    by_ip = ev.HostEndpointUpdate("e", None, ("198.18.7.1", "fd00:7::0001"), (TIER,), (), (), (), ())
    s = state(POLICY, by_ip, hep("named", "eth1"))
    assert [h.name for h in hepm.active_host_endpoints(s)] == ["named"]  # no addresses known: nothing matched
    s.take_dirty()
    changed = s.set_host_addresses({"eth0": frozenset({"198.18.7.1"}), "eth1": frozenset({"fd00:7::1"}),
                                    "eth2": frozenset({"fd00:7::1"}), "eth3": frozenset({"198.18.9.9"})})
    assert changed and s.take_dirty().host_endpoints == {"e"}
    # eth1 is named by another endpoint; eth0 (v4) and eth2 (v6, other spelling) hold expected IPs.
    assert [(h.name, h.iface) for h in hepm.active_host_endpoints(s)] == [("e", "eth0"), ("named", "eth1"),
                                                                          ("e", "eth2")]
    assert not s.set_host_addresses(dict(s.host_addresses))  # unchanged: nothing to do
    text = nft_text.render_replace(nft_table.render_model(s))
    assert 'iifname "eth0"' in text and 'iifname "eth2"' in text and 'iifname "eth3"' not in text
    s2 = state(hep("named", "eth1"))
    assert not s2.set_host_addresses({"eth0": frozenset({"198.18.7.1"})})  # no endpoint by IP: nothing dirty


def test_nft_host_endpoint_chains() -> None:
    s = state(POLICY, hep("h1", "eth1", tiers=[TIER], fwd=[TIER]), hep("all", "*"),
              failsafe_inbound=(FailsafePort("tcp", 22), FailsafePort("tcp", 179)))
    model = nft_table.render_model(s)
    hep_in = model.chains[nft_names.HEP_IN].rules
    assert hep_in[:2] == ('iifname "cali*" return', 'iifname "lo" return')
    assert hep_in[2:] == ('iifname "eth1" goto fh-eth1', "goto fh-/all")
    fh = model.chains["fh-eth1"].rules
    assert fh[:3] == ("ct state established,related accept", 'ct state invalid counter name "IID/h" drop',
                      "jump failsafe-in")
    assert "jump pi-default/hp" in " ".join(fh) and fh[-1] == 'counter name "NID/h" drop'
    assert model.chains["failsafe-in"].rules == ('meta l4proto tcp th dport { 22, 179 } counter name "FIA/h" accept',)
    assert model.chains["thf-eth1"].rules == ("return",)  # no egress applyOnForward policy: left alone
    assert "jump pi-default/hp" in " ".join(model.chains["fhf-eth1"].rules)
    assert model.chains["fh-/all"].rules[-1] == 'counter name "NID/h" drop'  # no policy, no profile: drop
    assert 'ct state invalid counter name "IID/f" drop' in model.chains["fhf-eth1"].rules
    assert {"IID/h", "NID/h", "FIA/h", "TID/f//default", "PIA//0/default//hp"} <= model.counters
    assert not any("169.254.169.254" in r for r in model.chains["nat-prerouting"].rules)  # no metadata DNAT
    assert model.chains["input"].rules[-1] == f"jump {nft_names.HEP_IN}"


def test_nft_metadata_dnat_and_allow() -> None:
    model = nft_table.render_model(state(metadata=MetadataTarget("198.18.0.1", 8775)))
    nat = model.chains["nat-prerouting"]
    assert "hook prerouting" in (nat.hook or "")
    assert nat.rules[0] == 'iifname "cali*" ip daddr 169.254.169.254 tcp dport 80 dnat ip to 198.18.0.1:8775'
    assert nat.rules[1:] == ("dnat ip to ip daddr map @fip-dnat4", "dnat ip6 to ip6 daddr map @fip-dnat6")
    to_host = model.chains["wl-to-host"].rules
    assert to_host.index("ip daddr 198.18.0.1 tcp dport 8775 accept") < to_host.index("jump from-wl-dispatch")


def test_nft_incremental_host_endpoint_changes() -> None:
    s = state(hep("h1", "eth1", tiers=[TIER]))
    planner = NftPlanner()
    planner.commit(planner.plan(s, s.take_dirty()))
    assert "drop" in planner.applied.chains["fh-eth1"].rules[-2]  # policy unknown yet: fail closed
    s.apply(POLICY)  # the policy arrives late: the endpoint chain is re-rendered with the jump
    p = planner.plan(s, s.take_dirty())
    assert not p.full and "flush chain inet calico fh-eth1" in p.text and "jump pi-default/hp" in p.text
    planner.commit(p)
    s.apply(ev.HostEndpointRemove("h1"))
    p = planner.plan(s, s.take_dirty())
    assert "delete chain inet calico fh-eth1" in p.text and "flush chain inet calico hep-in" in p.text
    assert p.text.index("add rule inet calico hep-in") < p.text.index("delete chain inet calico fh-eth1")


def test_iptables_host_endpoint_chains_and_failsafes() -> None:
    s = state(POLICY, hep("h1", "eth1", tiers=[TIER]), hep("all", "*"),
              failsafe_inbound=(FailsafePort("tcp", 22), FailsafePort("udp", 68, "10.0.0.0/8")))
    m4, m6 = ipt_table.render_family(s, 4), ipt_table.render_family(s, 6)
    disp = m4[ipt_names.FROM_HEP].rules
    assert disp[:2] == (ipt_model.Rule("-i cali+", "-j RETURN"), ipt_model.Rule("-i lo", "-j RETURN"))
    assert disp[2:] == (ipt_model.Rule("-i eth1", "-g cali-fh-eth1"), ipt_model.Rule("", "-g cali-fh-/all"))
    assert m4[ipt_names.FAILSAFE_IN].rules == (
        ipt_model.Rule("-p tcp -m multiport --dports 22", "-j ACCEPT", "FIA/h"),
        ipt_model.Rule("-p udp -s 10.0.0.0/8 -m multiport --dports 68", "-j ACCEPT", "FIA/h"),
    )
    assert m6[ipt_names.FAILSAFE_IN].rules == (ipt_model.Rule("-p tcp -m multiport --dports 22", "-j ACCEPT", "FIA/h"),)
    fh = m4["cali-fh-eth1"].rules
    assert fh[2] == ipt_model.Rule("", f"-j {ipt_names.FAILSAFE_IN}") and fh[-1] == ipt_model.Rule("", "-j DROP", "NID/h")
    assert ipt_model.Rule("-m conntrack --ctstate INVALID", "-j DROP", "IID/h") in fh
    assert ipt_model.Rule("-m mark --mark 0x0/0x20000", "-j DROP", "TID/h//default") in fh
    assert m4["cali-fhfw-eth1"].rules == (ipt_model.Rule("", "-j RETURN"),)
    assert m4[ipt_names.INPUT].rules[-1] == ipt_model.Rule("", f"-j {ipt_names.FROM_HEP}")
    assert all(len(n) <= ipt_names.MAX_CHAIN for n in m4)


def test_iptables_metadata_nat_section() -> None:
    s = state(metadata=MetadataTarget("198.18.0.1", 8775))
    v4 = ipt_side.side_restore_text("nat", ipt_nat.nat_chains(s.config, 4), ipt_side.SavedSide())
    assert "*nat\n:cali-PREROUTING - [0:0]\n" in v4 and "\n-I PREROUTING 1 " in v4
    assert "-i cali+ -d 169.254.169.254/32 -p tcp --dport 80" in v4 and "--to-destination 198.18.0.1:8775" in v4
    assert "169.254.169.254" not in ipt_side.side_restore_text("nat", ipt_nat.nat_chains(s.config, 6),
                                                               ipt_side.SavedSide())
    held = ipt_side.parse_side("nat", "-A PREROUTING -m comment --comment \"cali:x\" -j cali-PREROUTING\n")
    assert held.jumps == {("PREROUTING", "cali-PREROUTING")}
    assert "-I PREROUTING" not in ipt_side.side_restore_text("nat", ipt_nat.nat_chains(s.config, 4), held)
    # Metadata turned off: its rule goes, the chain stays (the floating IPs' DNAT hangs off it).
    off = ipt_side.side_restore_text("nat", ipt_nat.nat_chains(state().config, 4),
                                     ipt_side.expected_side("nat", ipt_nat.nat_chains(s.config, 4)))
    assert ":cali-PREROUTING - [0:0]" in off and "169.254.169.254" not in off and "-X " not in off
    to_host = ipt_table.render_family(s, 4)[ipt_names.WL_TO_HOST].rules
    assert ipt_model.Rule("-p tcp -d 198.18.0.1/32 --dport 8775", "-j ACCEPT") in to_host


def test_iptables_incremental_host_endpoint_removal() -> None:
    s = state(hep("h1", "eth1", tiers=[TIER]))
    planner = IptPlanner()
    planner.commit(plan_full(s, {f: ipt_text.SavedTable() for f in (4, 6)}, set()))
    s.take_dirty()
    s.apply(POLICY)
    p = planner.plan_incremental(s, s.take_dirty())
    assert "-A cali-fh-eth1" in p.tables[4] and "-j cali-pi-default/hp" in p.tables[4]
    planner.commit(p)
    s.apply(ev.HostEndpointRemove("h1"))
    p = planner.plan_incremental(s, s.take_dirty())
    for kind in ipt_names.HEP_KINDS:
        assert f"-X {kind}eth1" in p.tables[4]
    assert f":{ipt_names.FROM_HEP} - [0:0]" in p.tables[4]  # dispatch rewritten in the same transaction


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")
def test_rendered_host_endpoint_table_is_valid_nft() -> None:
    s = state(POLICY, hep("h1", "eth1", tiers=[TIER], fwd=[TIER]), hep("all", "*", profiles=("missing",)),
              failsafe_inbound=(FailsafePort("tcp", 22), FailsafePort("udp", 68, "10.0.0.0/8"),
                                FailsafePort("tcp", 5, "fd00::/8")),
              metadata=MetadataTarget("198.18.0.1", 8775))
    ns = f"cnt-hepu-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-c", "-f", "-"],
                              input=nft_text.render_replace(nft_table.render_model(s)), capture_output=True, text=True,
                              timeout=20, check=False)
        assert proc.returncode == 0, proc.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=10)

"""An endpoint that names its MAC (OpenStack ports) drops frames from any other MAC, on both backends."""

from __future__ import annotations

import dataclasses

from calico.calculation import events as ev
from calico.dataplane.iptables import model as ipt_model
from calico.dataplane.iptables.endpoints import endpoint_chains as ipt_chains
from calico.dataplane.nftables.endpoints import endpoint_chains as nft_chains
from calico.openstack import ports

EP = ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("openstack", "vm"), "tap0123456789a", None, ("198.18.1.2/32",),
                               (), (), ())


def test_nft_checks_the_source_mac_only_when_the_endpoint_names_one() -> None:
    with_mac = dataclasses.replace(EP, mac="FA:16:3E:00:00:01")
    fw = nft_chains(with_mac, (), ())[0]
    assert fw.rules[1] == 'ether saddr != fa:16:3e:00:00:01 counter name "SED/w" drop'  # before the address checks
    assert not any("ether saddr" in r for r in nft_chains(EP, (), ())[0].rules)


def test_iptables_checks_the_source_mac_only_when_the_endpoint_names_one() -> None:
    with_mac = dataclasses.replace(EP, mac="fa:16:3e:00:00:01")
    fw = ipt_chains(with_mac, 4, (), ())[0]
    assert ipt_model.Rule("-m mac ! --mac-source FA:16:3E:00:00:01", "-j DROP", "SED/w") in fw.rules
    assert not any("--mac-source" in r.match for r in ipt_chains(EP, 4, (), ())[0].rules)


PORT = {"id": "p", "device_id": "vm", "device_owner": "compute:nova", "binding:host_id": "h1", "network_id": "n",
        "mac_address": "FA:16:3E:00:00:01", "security_groups": ["sg"],
        "fixed_ips": [{"subnet_id": "s", "ip_address": "198.18.1.2"}]}


def test_the_driver_names_the_mac_unless_anti_spoofing_is_off_or_a_pair_brings_another() -> None:
    assert ports.endpoint(PORT)["spec"]["mac"] == "fa:16:3e:00:00:01"
    assert "mac" not in ports.endpoint({**PORT, "port_security_enabled": False, "security_groups": []})["spec"]
    same = {**PORT, "allowed_address_pairs": [{"ip_address": "198.18.9.9", "mac_address": "fa:16:3e:00:00:01"}]}
    assert ports.endpoint(same)["spec"]["mac"] == "fa:16:3e:00:00:01"
    other = {**PORT, "allowed_address_pairs": [{"ip_address": "198.18.9.9", "mac_address": "fa:16:3e:99:99:99"}]}
    assert "mac" not in ports.endpoint(other)["spec"]

"""The agent's view: subnet records and this host's `openstack` endpoints; bad keys logged and skipped."""

from __future__ import annotations

import json
import logging

import pytest

from calico.datastore.syncer import Update
from calico.dhcp.state import AgentState, Changes, DhcpHost
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

S4 = neutron_subnet("s4", "198.18.20.0/24", "198.18.20.1")
P1 = neutron_port("11111111-aaaa", "FA:16:3E:00:00:01", [("s4", "198.18.20.5"), ("s6", "fd00:20::5")])


def state() -> AgentState:
    return AgentState("h1", REGION)


def test_prefixes_are_the_regions_subnets_and_the_openstack_namespace():
    assert state().prefixes() == ["/calico/dhcp/v2/no-region/subnet/",
                                  "/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/"]


def test_subnets_and_local_endpoints_fold_in_and_out():
    st = state()
    assert st.apply([subnet_update(S4)]) == Changes(subnets=True)
    assert st.subnets["s4"].gateway_ip == "198.18.20.1"
    assert st.apply([endpoint_update(P1)]) == Changes(hosts=True)
    [host] = st.hosts.values()
    assert host == DhcpHost(endpoint_doc(P1)["metadata"]["name"], "fa:16:3e:00:00:01", ("198.18.20.5", "fd00:20::5"))
    assert st.apply([endpoint_update(P1, rev=2)]) == Changes()  # same content: nothing changed
    assert st.apply([Update(endpoint_key(endpoint_doc(P1)), None, 3)]) == Changes(hosts=True)
    assert st.apply([Update(subnet_key("s4"), None, 4)]) == Changes(subnets=True)
    assert not st.subnets and not st.hosts


def test_endpoints_of_other_hosts_are_not_kept():
    st = state()
    other = neutron_port("22222222-bbbb", "fa:16:3e:00:00:02", [("s4", "198.18.20.6")], host="h2")
    assert st.apply([endpoint_update(other)]) == Changes()
    assert not st.hosts


def test_an_endpoint_moving_away_is_removed():
    st = state()
    st.apply([endpoint_update(P1)])
    moved = {**P1, "binding:host_id": "h2"}
    # A live migration renames the endpoint (the node is part of the name): the old key goes, a new one comes.
    doc = endpoint_doc(P1)
    assert st.apply([Update(endpoint_key(doc), None, 2), endpoint_update(moved, 3)]) == Changes(hosts=True)
    assert not st.hosts


def test_bad_values_are_logged_by_key_and_count_as_absent(caplog: pytest.LogCaptureFixture):
    st = state()
    st.apply([subnet_update(S4), endpoint_update(P1)])
    bad_subnet = {**json.loads(subnet_update(S4).value or b""), "cidr": "198.18.20.7/24"}
    doc = endpoint_doc(P1)
    bad_wep = {**doc, "spec": {**doc["spec"], "mac": "not-a-mac"}}
    with caplog.at_level(logging.WARNING):
        changes = st.apply([Update(subnet_key("s4"), json.dumps(bad_subnet).encode(), 2),
                            Update(endpoint_key(doc), json.dumps(bad_wep).encode(), 3),
                            Update(subnet_key("s9"), b"\x00garbage", 4),
                            Update(endpoint_key(doc) + "x", b"[]", 5)])
    assert changes == Changes(subnets=True, hosts=True)
    assert not st.subnets and not st.hosts
    assert f"{subnet_key('s4')}: cidr" in caplog.text
    assert f"{subnet_key('s9')}: stored value is not JSON" in caplog.text
    assert f"ignoring bad WorkloadEndpoint at {endpoint_key(doc)}:" in caplog.text and "mac" in caplog.text
    assert f"{endpoint_key(doc)}x" in caplog.text


def test_an_endpoint_without_mac_is_not_served():
    st = state()
    doc = endpoint_doc(P1)
    del doc["spec"]["mac"]
    assert st.apply([Update(endpoint_key(doc), json.dumps(doc).encode(), 1)]) == Changes()

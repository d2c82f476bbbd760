"""Folding syncer updates into the renderer's inputs; bad values count as absent and never raise."""

from __future__ import annotations

import json
import logging

import pytest

from calico.bgp.state import BGPState, affinity_confirmed
from calico.datastore.keys import affinity_key, host_affinity_prefix, kind_prefix
from calico.datastore.store import encode
from calico.datastore.syncer import Update
from tests.unit.bgp.builders import bgp_config, node, peer, pool

NODES = kind_prefix("nodes")


def put(key: str, value: bytes, rev: int = 1) -> Update:
    return Update(key, value, rev)


def affinity(node_name: str, cidr: str, state: str = "confirmed", deleted: bool = False) -> Update:
    return put(affinity_key(node_name, cidr), json.dumps({"state": state, "deleted": deleted}).encode())


def test_prefixes_follow_only_what_the_renderer_reads() -> None:
    assert BGPState("h1").prefixes() == [
        kind_prefix("nodes"), kind_prefix("bgpconfigurations"), kind_prefix("bgppeers"), kind_prefix("ippools"),
        kind_prefix("felixconfigurations"),
        host_affinity_prefix("h1"),
    ]


def test_resources_in_and_out() -> None:
    state = BGPState("h1")
    n1, p, cfg, pl = node("h1", "198.19.0.1/24"), peer("tor", peerIP="198.19.0.254", asNumber=65000), \
        bgp_config("default"), pool("pool4", "198.18.0.0/16")
    assert state.apply([
        put(NODES + "h1", encode(n1)),
        put(kind_prefix("bgppeers") + "tor", encode(p)),
        put(kind_prefix("bgpconfigurations") + "default", encode(cfg)),
        put(kind_prefix("ippools") + "pool4", encode(pl)),
    ])
    inp = state.inputs()
    assert list(inp.nodes) == ["h1"] and list(inp.peers) == ["tor"] and list(inp.configs) == ["default"]
    assert inp.pools["pool4"].spec.cidr == "198.18.0.0/16"
    assert state.apply([Update(kind_prefix("bgppeers") + "tor", None, 2)])
    assert state.inputs().peers == {}
    assert not state.apply([Update(kind_prefix("bgppeers") + "tor", None, 3)])  # already gone: no change


def test_affinities_of_this_node_when_confirmed() -> None:
    state = BGPState("h1")
    assert state.apply([affinity("h1", "198.18.1.0/26"), affinity("h1", "fd00:1::100/122")])
    assert not state.apply([affinity("h2", "198.18.2.0/26")])  # another node's
    assert not state.apply([affinity("h1", "198.18.3.0/26", "pending")])
    assert state.inputs().blocks == {"198.18.1.0/26", "fd00:1::100/122"}
    assert state.apply([affinity("h1", "198.18.1.0/26", "pendingDeletion")])
    assert state.apply([affinity("h1", "fd00:1::100/122", deleted=True)])
    assert state.inputs().blocks == set()
    state.apply([affinity("h1", "198.18.1.0/26")])
    assert state.apply([Update(affinity_key("h1", "198.18.1.0/26"), None, 9)])
    assert state.inputs().blocks == set()


@pytest.mark.parametrize("value", [b"not json", b"[]", b'{"deleted": false}', b'{"state": "maybe"}',
                                   b'{"state": "confirmed", "deleted": "no"}'])
def test_malformed_affinity_is_not_confirmed(value: bytes, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert not affinity_confirmed("/calico/ipam/v2/host/h1/ipv4/block/198.18.1.0-26", value)
    assert "198.18.1.0-26" in caplog.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "not JSON"),
        (b'{"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "tor"}, '
         b'"spec": {"peerIP": "nonsense"}}', "peerIP"),
        (encode(peer("other", peerIP="198.19.0.254", asNumber=65000)), "the value is BGPPeer(other)"),
        (encode(node("tor", "198.19.0.9/24")), "the value is Node(tor)"),
        (b"\xff\xfe", "bgppeers/tor"),
    ],
)
def test_bad_value_counts_as_absent(value: bytes, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    state = BGPState("h1")
    key = kind_prefix("bgppeers") + "tor"
    state.apply([put(key, encode(peer("tor", peerIP="198.19.0.254", asNumber=65000)))])
    with caplog.at_level(logging.WARNING):
        assert state.apply([put(key, value, 2)])  # the good version it replaces is gone
    assert state.inputs().peers == {}
    assert key in caplog.text and reason in caplog.text


def test_keys_it_does_not_follow_are_ignored() -> None:
    state = BGPState("h1")
    assert not state.apply([
        put(kind_prefix("globalnetworkpolicies") + "p", b"{}"),
        put(kind_prefix("nodes") + "ns/h1", b"{}"),  # a namespaced key shape cannot hold a Node
        put("/calico/ipam/v2/assignment/ipv4/block/198.18.1.0-26", b"{}"),
    ])


def test_interface_prefixes_follow_felix_configuration() -> None:
    def felix(name: str, prefix: str) -> Update:
        doc = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": name},
               "spec": {"interfacePrefix": prefix}}
        return Update(f"/calico/resources/v3/projectcalico.org/felixconfigurations/{name}",
                      json.dumps(doc).encode(), 1)

    state = BGPState("h1")
    assert state.interface_prefixes() is None
    assert state.apply([felix("default", "cali,tap")])
    assert state.interface_prefixes() == ("cali", "tap")
    assert state.apply([felix("node.h1", "tap")])
    assert state.interface_prefixes() == ("tap",)  # this node's own configuration first
    assert not state.apply([felix("node.h2", "xyz")])  # another node's: not read
    assert state.interface_prefixes() == ("tap",)

"""The Node calico-node writes (only its BGP fields change) and the duplicate-address check (pure)."""

from __future__ import annotations

import pytest

from calico.node.nodespec import address_conflicts, bgp_addresses, desired_node
from calico.resources import Node, ResourceError, parse_resource


def node(name: str, bgp: dict[str, object] | None = None, **extra: object) -> Node:
    spec: dict[str, object] = dict(extra)
    if bgp is not None:
        spec["bgp"] = bgp
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": name}, "spec": spec}
    return parse_resource(doc)  # type: ignore[return-value]


def test_a_new_node() -> None:
    n = desired_node(None, "h1", "198.19.1.3/24", None, None)
    assert n.metadata.name == "h1"
    assert n.spec.bgp is not None and n.spec.bgp.ipv4Address == "198.19.1.3/24"
    assert n.spec.bgp.ipv6Address is None and n.spec.bgp.asNumber is None
    assert desired_node(None, "h1", None, None, None).spec.bgp is None  # policy only


def test_an_existing_node_keeps_labels_and_other_fields() -> None:
    existing = node("h1", {"ipv4Address": "198.19.7.7/24", "asNumber": 65010, "routeReflectorClusterID": "224.0.0.1"},
                    ipv4VXLANTunnelAddr="198.18.0.1")
    existing = existing.model_copy(update={"metadata": existing.metadata.model_copy(
        update={"labels": {"rack": "r1"}, "resourceVersion": "42"})})
    n = desired_node(existing, "h1", "198.19.1.3/24", "fd00:1::3/64", None)
    assert n.metadata.labels == {"rack": "r1"} and n.metadata.resourceVersion == "42"  # CAS on what we read
    assert n.spec.bgp is not None
    assert (n.spec.bgp.ipv4Address, n.spec.bgp.ipv6Address) == ("198.19.1.3/24", "fd00:1::3/64")
    assert n.spec.bgp.asNumber == 65010 and n.spec.bgp.routeReflectorClusterID == "224.0.0.1"
    assert n.spec.ipv4VXLANTunnelAddr == "198.18.0.1"
    assert desired_node(existing, "h1", "198.19.1.3/24", None, 64512).spec.bgp.asNumber == 64512  # type: ignore[union-attr]


def test_an_invalid_name_is_refused_naming_the_field() -> None:
    with pytest.raises(ResourceError, match=r"metadata.name"):
        desired_node(None, "Not_A_Name", "198.19.1.3/24", None, None)


def test_conflicts_compare_addresses_without_prefix_and_skip_ourselves() -> None:
    others = [
        node("h1", {"ipv4Address": "198.19.1.3/24"}),  # ourselves (a changed address is no conflict)
        node("h2", {"ipv4Address": "198.19.1.3/16"}),
        node("h3", {"ipv6Address": "fd00:1::3/64"}),
        node("h4", {"ipv4Address": "198.19.1.4/24"}),
        node("h5"),
    ]
    problems = address_conflicts("h1", "198.19.1.3/24", "fd00:1::3/120", others)
    assert problems == [
        "Node 'h2' is already using the IPv4 address 198.19.1.3",
        "Node 'h3' is already using the IPv6 address fd00:1::3",
    ]
    assert address_conflicts("h1", "198.19.1.9/24", None, others) == []
    assert bgp_addresses(others[2]) == (None, "fd00:1::3/64") and bgp_addresses(None) == (None, None)

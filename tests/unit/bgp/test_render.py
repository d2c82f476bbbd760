"""The renderer: resources in, BIRD 2 text out. Every text rendered here must also pass `bird -p`."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TypeVar

import pytest

from calico.bgp.inputs import BGPInputs, RenderError
from calico.bgp.render import render_config
from tests.unit.bgp.builders import (
    bgp_config,
    bgp_names,
    bird_accepts,
    block,
    inputs,
    node,
    peer,
    pool,
    render_checked,
    three_nodes,
)

T = TypeVar("T")
RR_PEER = peer("peer-with-route-reflectors", nodeSelector="all()", peerSelector="route-reflector == 'true'")
MESH_OFF = bgp_config("default", nodeToNodeMeshEnabled=False)


def test_full_mesh_by_default_per_family() -> None:
    out = render_checked(inputs(three_nodes()))
    assert bgp_names(out.text) == ["Mesh_198_19_0_2", "Mesh_198_19_0_3", "Mesh_fd00_b9__2"]  # h3 has no IPv6
    assert "router id 198.19.0.1;" in out.text
    mesh = block(out.text, "protocol bgp Mesh_198_19_0_2")
    assert mesh is not None
    assert 'description "node-to-node mesh";' in mesh
    assert "local 198.19.0.1 port 179 as 64512;" in mesh
    assert "neighbor 198.19.0.2 port 179 as 64512;" in mesh
    assert "rr client" not in mesh and "password" not in mesh
    v6 = block(out.text, "protocol bgp Mesh_fd00_b9__2 from calico_peer6")
    assert v6 is not None and "local fd00:b9::1 port 179 as 64512;" in v6
    assert out.problems == ()
    assert [(p.version, p.address, p.kind) for p in out.peerings] == [
        (4, "198.19.0.2", "Mesh"), (4, "198.19.0.3", "Mesh"), (6, "fd00:b9::2", "Mesh"),
    ]


def test_template_has_calicos_session_settings() -> None:
    text = render_checked(inputs(three_nodes())).text
    tpl = block(text, "template bgp calico_peer4")
    assert tpl is not None
    for line in ("multihop;", "graceful restart on;", "connect delay time 2;", "connect retry time 5;",
                 "error wait time 5, 30;", "gateway recursive;", "add paths on;",
                 "import filter calico_import_from_peers4;", "export filter calico_export_to_peers4;"):
        assert line in tpl
    kernel = block(text, "protocol kernel kernel4")
    assert kernel is not None
    for line in ("learn;", "persist;", "graceful restart;", "export filter calico_to_kernel4;"):
        assert line in kernel


def test_mesh_off() -> None:
    out = render_checked(inputs(three_nodes(), configs=[MESH_OFF]))
    assert bgp_names(out.text) == []


def test_as_numbers_node_then_cluster_then_default() -> None:
    nodes = [node("h1", "198.19.0.1/24", asNumber=65001), node("h2", "198.19.0.2/24"), node("h3", "198.19.0.3/24")]
    text = render_checked(inputs(nodes, configs=[bgp_config("default", asNumber=65100)])).text
    mesh = block(text, "protocol bgp Mesh_198_19_0_2")
    assert mesh is not None
    assert "local 198.19.0.1 port 179 as 65001;" in mesh
    assert "neighbor 198.19.0.2 port 179 as 65100;" in mesh
    # Seen from h2, h1 keeps its own AS (an eBGP session).
    text2 = render_checked(inputs(nodes, me="h2", configs=[bgp_config("default", asNumber=65100)])).text
    assert "neighbor 198.19.0.1 port 179 as 65001;" in (block(text2, "protocol bgp Mesh_198_19_0_1") or "")


def test_listen_port_per_node_config() -> None:
    configs = [bgp_config("default", listenPort=1179), bgp_config("node.h2", listenPort=1790)]
    text = render_checked(inputs(three_nodes(), configs=configs)).text
    assert bgp_names(text) == ["Mesh_198_19_0_2_port_1790", "Mesh_198_19_0_3_port_1179", "Mesh_fd00_b9__2_port_1790"]
    to_h2 = block(text, "protocol bgp Mesh_198_19_0_2_port_1790")
    assert to_h2 is not None
    assert "local 198.19.0.1 port 1179 as 64512;" in to_h2 and "neighbor 198.19.0.2 port 1790 as 64512;" in to_h2


def test_global_node_and_selector_peers() -> None:
    nodes = three_nodes()
    nodes[0] = node("h1", "198.19.0.1/24", "fd00:b9::1/64", labels={"rack": "a"})
    peers = [
        peer("tor", peerIP="198.19.0.254", asNumber=65000),
        peer("mine", node="h1", peerIP="198.19.9.1:1790", asNumber=65001),
        peer("not-mine", node="h2", peerIP="198.19.9.2", asNumber=65002),
        peer("rack-a", nodeSelector="rack == 'a'", peerIP="[fd00:b9::fe]:1790", asNumber=65003),
        peer("rack-b", nodeSelector="rack == 'b'", peerIP="198.19.9.3", asNumber=65004),
    ]
    out = render_checked(inputs(nodes, peers=peers))
    kinds = {p.name: (p.kind, p.options.origin) for p in out.peerings if p.kind != "Mesh"}
    assert kinds == {
        "Global_198_19_0_254": ("Global", "BGPPeer(tor)"),
        "Node_198_19_9_1_port_1790": ("Node", "BGPPeer(mine)"),
        "Node_fd00_b9__fe_port_1790": ("Node", "BGPPeer(rack-a)"),
    }
    assert "neighbor 198.19.9.1 port 1790 as 65001;" in (block(out.text, "protocol bgp Node_198_19_9_1_port_1790") or "")
    assert "local fd00:b9::1 port 179 as 64512;" in (block(out.text, "protocol bgp Node_fd00_b9__fe_port_1790") or "")


def test_bad_peers_are_skipped_with_a_reason() -> None:
    nodes = [node("h1", "198.19.0.1/24"), node("h2", "198.19.0.2/24")]
    peers = [
        peer("no-as", peerIP="198.19.0.254"),
        peer("v6-peer", peerIP="fd00:b9::fe", asNumber=65000),  # h1 has no IPv6 address
        peer("filtered", peerIP="198.19.0.253", asNumber=65000, filters=["f"]),
        peer("reach", peerIP="198.19.0.252", asNumber=65000, reachableBy="198.19.0.254"),
        peer("myself", peerIP="198.19.0.1", asNumber=64512),
        peer("good", peerIP="198.19.0.251", asNumber=65000),
    ]
    out = render_checked(inputs(nodes, peers=peers))
    assert bgp_names(out.text) == ["Global_198_19_0_251", "Global_198_19_0_252", "Mesh_198_19_0_2"]
    assert out.problems == (
        "BGPPeer(filtered): filters (BGPFilter) are not supported, so its routes cannot be filtered as asked; skipped",
        "BGPPeer(no-as): peerIP 198.19.0.254 needs an asNumber; skipped",
        "BGPPeer(reach): reachableBy is not supported and is ignored",
        "BGPPeer(v6-peer): this node has no IPv6 address to peer with fd00:b9::fe from; skipped",
    )


def test_route_reflector_and_clients_from_one_bgppeer() -> None:
    nodes = three_nodes(routeReflectorClusterID="244.0.0.1")
    nodes[0] = node("h1", "198.19.0.1/24", "fd00:b9::1/64", labels={"route-reflector": "true"},
                    routeReflectorClusterID="244.0.0.1")
    rr = render_checked(inputs(nodes, peers=[RR_PEER], configs=[MESH_OFF]))
    assert bgp_names(rr.text) == ["Node_198_19_0_2", "Node_198_19_0_3", "Node_fd00_b9__2"]
    for name in bgp_names(rr.text):
        body = block(rr.text, f"protocol bgp {name}")
        assert body is not None and "rr client;" in body and "rr cluster id 244.0.0.1;" in body
    assert "if source = RTS_BGP then accept;" in (block(rr.text, "filter calico_export_to_peers4") or "")
    client = render_checked(inputs(nodes, me="h2", peers=[RR_PEER], configs=[MESH_OFF]))
    assert bgp_names(client.text) == ["Node_198_19_0_1", "Node_fd00_b9__1"]
    assert "rr client" not in client.text
    assert "RTS_BGP" not in (block(client.text, "filter calico_export_to_peers4") or "RTS_BGP")  # never passes on
    assert render_checked(inputs(nodes, me="h3", peers=[RR_PEER], configs=[MESH_OFF])).peerings[0].address == "198.19.0.1"


def test_reflectors_of_one_cluster_are_not_each_others_clients() -> None:
    rr_labels = {"route-reflector": "true"}
    nodes = [
        node("h1", "198.19.0.1/24", labels=rr_labels, routeReflectorClusterID="244.0.0.1"),
        node("h2", "198.19.0.2/24", labels=rr_labels, routeReflectorClusterID="244.0.0.1"),
        node("h3", "198.19.0.3/24", labels=rr_labels, routeReflectorClusterID="244.0.0.2"),
        node("h4", "198.19.0.4/24"),
    ]
    out = render_checked(inputs(nodes, peers=[RR_PEER], configs=[MESH_OFF]))
    clients = {p.address: p.rr_cluster_id for p in out.peerings}
    assert clients == {"198.19.0.2": None, "198.19.0.3": "244.0.0.1", "198.19.0.4": "244.0.0.1"}


def test_one_session_per_peer_most_specific_wins() -> None:
    peers = [
        peer("a-global", peerSelector="all()"),
        peer("b-node", node="h1", peerIP="198.19.0.2", asNumber=64512, keepaliveTime="20s"),
    ]
    out = render_checked(inputs(three_nodes(), peers=peers))
    assert bgp_names(out.text) == ["Global_198_19_0_3", "Node_198_19_0_2", "Global_fd00_b9__2"]
    assert "keepalive time 20;" in (block(out.text, "protocol bgp Node_198_19_0_2") or "")


def test_passwords() -> None:
    ref = {"secretKeyRef": {"name": "bgp-secrets", "key": "tor"}}
    peers = [
        peer("tor", peerIP="198.19.0.254", asNumber=65000, password=ref),
        peer("lost", peerIP="198.19.0.253", asNumber=65000, password={"secretKeyRef": {"name": "gone", "key": "k"}}),
        peer("optional", peerIP="198.19.0.252", asNumber=65000,
             password={"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}),
    ]
    secrets = {("bgp-secrets", "tor"): "p4ss w\\ord"}
    out = render_checked(inputs(three_nodes(), peers=peers), secrets)
    assert 'password "p4ss w\\ord";' in (block(out.text, "protocol bgp Global_198_19_0_254") or "")
    assert "password" not in (block(out.text, "protocol bgp Global_198_19_0_252") or "x password")
    assert "Global_198_19_0_253" not in bgp_names(out.text)  # never without the password it asked for
    assert out.problems == ("BGPPeer(lost): BGPPeer(lost) password: secret 'gone' key 'k' not found; skipped",)
    assert inputs(three_nodes(), peers=peers).secret_refs() == {("bgp-secrets", "tor"), ("gone", "k")}


@pytest.mark.parametrize("bad", ['has"quote', "new\nline", "", "x" * 81])
def test_unusable_password_skips_the_peer(bad: str) -> None:
    peers = [peer("tor", peerIP="198.19.0.254", asNumber=65000, password={"secretKeyRef": {"name": "s", "key": "k"}})]
    out = render_checked(inputs(three_nodes(), peers=peers), {("s", "k"): bad})
    assert "Global_198_19_0_254" not in bgp_names(out.text)
    assert "must be 1-80 printable characters" in out.problems[0]


def test_mesh_password_and_restart_time() -> None:
    cfg = bgp_config("default", nodeMeshPassword={"secretKeyRef": {"name": "s", "key": "mesh"}},
                     nodeMeshMaxRestartTime="90s")
    out = render_checked(inputs(three_nodes(), configs=[cfg]), {("s", "mesh"): "meshpw"})
    for name in bgp_names(out.text):
        body = block(out.text, f"protocol bgp {name}")
        assert body is not None and 'password "meshpw";' in body and "graceful restart time 90;" in body
    missing = render_checked(inputs(three_nodes(), configs=[cfg]))
    assert bgp_names(missing.text) == []  # no unauthenticated mesh
    assert missing.problems == (
        "BGPConfiguration(default): BGPConfiguration(default) nodeMeshPassword: secret 's' key 'mesh' not found; "
        "no node-to-node mesh sessions",
    )


def test_session_options() -> None:
    peers = [peer("tor", peerIP="198.19.0.254", asNumber=65000, keepaliveTime="10s", maxRestartTime="2m",
                  ttlSecurity=2, numAllowedLocalASNumbers=1, keepOriginalNextHop=True, sourceAddress="None")]
    body = block(render_checked(inputs(three_nodes(), peers=peers)).text, "protocol bgp Global_198_19_0_254")
    assert body is not None
    for line in ("local port 179 as 64512;", "keepalive time 10;", "hold time 30;", "graceful restart time 120;",
                 "ttl security on;", "multihop 2;", "allow local as 1;", "ipv4 { next hop keep; };"):
        assert line in body


def test_pools_shape_the_filters() -> None:
    pools = [
        pool("plain", "198.18.0.0/16"),
        pool("vxlan", "198.20.0.0/16", vxlanMode="Always"),
        pool("ipip", "198.21.0.0/16", ipipMode="CrossSubnet"),
        pool("private", "198.22.0.0/16", disableBGPExport=True),
        pool("v6", "fd00:1::/48", vxlanMode="CrossSubnet"),
    ]
    text = render_checked(inputs(three_nodes(), pools=pools, blocks={"198.18.1.0/26"})).text
    to_peers = block(text, "filter calico_export_to_peers4") or ""
    assert "if !(net ~ [ 198.18.0.0/16+, 198.20.0.0/16+, 198.21.0.0/16+ ]) then reject;" in to_peers
    assert "if net.len = 0 then reject;" in to_peers
    to_kernel = block(text, "filter calico_to_kernel4") or ""
    assert "if net ~ [ 198.20.0.0/16+, 198.21.0.0/16+ ] then reject;" in to_kernel
    assert "198.18.0.0" not in to_kernel and "198.22.0.0" not in to_kernel
    assert "if net ~ [ fd00:1::/48+ ] then reject;" in (block(text, "filter calico_to_kernel6") or "")


def test_no_pools_exports_nothing() -> None:
    text = render_checked(inputs(three_nodes(), pools=[], blocks={"198.18.1.0/26"})).text
    assert block(text, "filter calico_export_to_peers4") == "  if net.len = 0 then reject;  # never a default route\n  reject;\n"


def test_blocks_and_borrowed_addresses() -> None:
    blocks = {"198.18.1.0/26", "198.18.1.64/26", "fd00:1::100/122"}
    text = render_checked(inputs(three_nodes(), blocks=blocks)).text
    assert block(text, "protocol static calico_blocks4") == (
        "  ipv4;\n  route 198.18.1.0/26 blackhole;\n  route 198.18.1.64/26 blackhole;\n"
    )
    assert block(text, "protocol static calico_blocks6") == "  ipv6;\n  route fd00:1::100/122 blackhole;\n"
    to_peers = block(text, "filter calico_export_to_peers4") or ""
    assert 'if proto = "calico_blocks4" then accept;' in to_peers
    assert ('if source = RTS_INHERIT && net.len = 32 && (ifname ~ "cali*") && '
            "!(net ~ [ 198.18.1.0/26+, 198.18.1.64/26+ ]) then accept;") in to_peers
    assert "net.len = 128" in (block(text, "filter calico_export_to_peers6") or "")
    no_blocks = render_checked(inputs(three_nodes())).text
    assert 'if source = RTS_INHERIT && net.len = 32 && (ifname ~ "cali*") then accept;' in no_blocks


def test_interface_prefixes_and_ignored_interfaces() -> None:
    cfg = bgp_config("default", ignoredInterfaces=["eth9", "vxlan*"])
    text = render_checked(inputs(three_nodes(), configs=[cfg]), prefixes=("cali", "tap")).text
    assert '(ifname ~ "cali*" || ifname ~ "tap*")' in text
    assert 'interface -"cali*", -"tap*", -"eth9", -"vxlan*", "*";' in (block(text, "protocol direct") or "")


def test_this_node_missing_or_without_bgp() -> None:
    with pytest.raises(RenderError, match=r"Node\(h9\) does not exist"):
        render_config(inputs(three_nodes(), me="h9"), {})
    with pytest.raises(RenderError, match=r"Node\(h4\) has no BGP address"):
        render_config(inputs([*three_nodes(), node("h4")], me="h4"), {})


def test_other_nodes_without_bgp_or_with_our_address() -> None:
    nodes = [*three_nodes(), node("h4"), node("h5", "198.19.0.1/24")]
    out = render_checked(inputs(nodes))
    assert bgp_names(out.text) == ["Mesh_198_19_0_2", "Mesh_198_19_0_3", "Mesh_fd00_b9__2"]
    assert out.problems == ("Node(h5) has this node's IPv4 address 198.19.0.1; not peered",)


def test_ipv6_only_node() -> None:
    nodes = [node("h1", v6="fd00:b9::1/64"), node("h2", "198.19.0.2/24", "fd00:b9::2/64")]
    out = render_checked(inputs(nodes))
    assert bgp_names(out.text) == ["Mesh_fd00_b9__2"]
    router_id = next(line for line in out.text.splitlines() if line.startswith("router id "))
    assert router_id == next(line for line in render_config(inputs(nodes), {}).text.splitlines()
                             if line.startswith("router id "))  # stable
    assert router_id != "router id 0.0.0.0;"


def test_log_severity_and_bind_mode() -> None:
    configs = [bgp_config("default", logSeverityScreen="Warning"), bgp_config("node.h1", logSeverityScreen="Debug",
                                                                             bindMode="NodeIP")]
    text = render_checked(inputs(three_nodes(), configs=configs)).text
    assert "log stderr all;" in text and "debug protocols all;" in text
    assert "strict bind on;" in (block(text, "protocol bgp Mesh_198_19_0_2") or "")
    quiet = render_checked(inputs(three_nodes(), configs=configs[:1])).text
    assert "log stderr { warning, error, auth, fatal, bug };" in quiet and "strict bind" not in quiet


def test_render_does_not_depend_on_input_order() -> None:
    peers = [peer(f"p{i}", peerIP=f"198.19.9.{i}", asNumber=65000 + i) for i in range(1, 8)]
    base = inputs(three_nodes(), peers=peers, blocks={"198.18.1.0/26", "198.18.2.0/26"})
    text = render_checked(base).text
    for seed in range(3):
        rnd = random.Random(seed)

        def shuffled(d: Mapping[str, T], rnd: random.Random = rnd) -> dict[str, T]:
            items = list(d.items())
            rnd.shuffle(items)
            return dict(items)

        again = BGPInputs(base.node_name, shuffled(base.nodes), {}, shuffled(base.peers),
                          shuffled(base.pools), base.blocks)
        assert render_config(again, {}).text == text


def test_bird_rejects_what_it_should() -> None:
    # The check the unit tests lean on can fail: a broken text is refused with a location.
    assert "syntax error" in (bird_accepts("router id 1.2.3.4;\nprotocol bgp {\n") or "")

"""Whatever valid resources say, the renderer writes text BIRD accepts, one protocol per session, and never raises
for another node's or a peer's data (only for this node's own absence)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico.bgp.inputs import BGPInputs
from calico.resources import BGPPeer, Node
from tests.unit.bgp.builders import bgp_config, bgp_names, bird_accepts, node, peer, pool
from tests.unit.bgp.builders import inputs as make_inputs

LABELS = st.dictionaries(st.sampled_from(["rr", "rack"]), st.sampled_from(["true", "a", "b"]), max_size=2)
AS = st.one_of(st.none(), st.sampled_from([64512, 65000, 4200000000]))
SELECTOR = st.sampled_from(["all()", "rr == 'true'", "rack == 'a'", "has(rack)", "!has(rr)"])
DURATION = st.one_of(st.none(), st.sampled_from(["0s", "1s", "90s", "2h", "500ms"]))


@st.composite
def nodes(draw: st.DrawFn) -> list[Node]:
    out = []
    for i in range(1, draw(st.integers(1, 5)) + 1):
        v4 = draw(st.one_of(st.none(), st.just(f"198.19.0.{i}/24")))
        v6 = draw(st.one_of(st.none(), st.just(f"fd00:b9::{i}/64")))
        extra: dict[str, Any] = {}
        if v4 or v6:
            if (asn := draw(AS)) is not None:
                extra["asNumber"] = asn
            if draw(st.booleans()):
                extra["routeReflectorClusterID"] = draw(st.sampled_from(["244.0.0.1", "244.0.0.2"]))
        out.append(node(f"h{i}", v4, v6, labels=draw(LABELS), **extra))
    return out


@st.composite
def peers(draw: st.DrawFn) -> list[BGPPeer]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        spec: dict[str, Any] = {}
        where = draw(st.sampled_from(["global", "node", "selector"]))
        if where == "node":
            spec["node"] = draw(st.sampled_from(["h1", "h2", "h9"]))
        elif where == "selector":
            spec["nodeSelector"] = draw(SELECTOR)
        if draw(st.booleans()):
            spec["peerSelector"] = draw(SELECTOR)
        else:
            spec["peerIP"] = draw(st.sampled_from(["198.19.0.254", "198.19.0.2", "[fd00:b9::fe]:1790", "198.19.9.9:180"]))
            if (asn := draw(AS)) is not None:
                spec["asNumber"] = asn
        for name in ("keepaliveTime", "maxRestartTime"):
            if (d := draw(DURATION)) is not None:
                spec[name] = d
        if draw(st.booleans()):
            spec["password"] = {"secretKeyRef": {"name": "s", "key": draw(st.sampled_from(["ok", "missing"]))}}
        spec["keepOriginalNextHop"] = draw(st.booleans())
        if draw(st.booleans()):
            spec["ttlSecurity"] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            spec["sourceAddress"] = "None"
        out.append(peer(f"p{i}", **spec))
    return out


@st.composite
def world(draw: st.DrawFn) -> BGPInputs:
    configs = []
    if draw(st.booleans()):
        configs.append(bgp_config("default", nodeToNodeMeshEnabled=draw(st.booleans()), asNumber=draw(AS),
                                  listenPort=draw(st.sampled_from([None, 179, 1790]))))
    if draw(st.booleans()):
        configs.append(bgp_config("node.h1", listenPort=draw(st.sampled_from([None, 1179])),
                                  logSeverityScreen=draw(st.sampled_from(["Debug", "Info", "Fatal"]))))
    pools = [pool("p4", "198.18.0.0/16", vxlanMode=draw(st.sampled_from(["Never", "Always"]))),
             pool("p6", "fd00:1::/48", disableBGPExport=draw(st.booleans()))]
    all_nodes = draw(nodes())
    all_nodes[0] = node("h1", "198.19.0.1/24", draw(st.one_of(st.none(), st.just("fd00:b9::1/64"))))
    blocks = draw(st.sets(st.sampled_from(["198.18.1.0/26", "198.18.1.64/26", "fd00:1::100/122"])))
    return make_inputs(all_nodes, pools=pools, peers=draw(peers()), configs=configs, blocks=blocks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world())
def test_any_valid_world_renders_a_config_bird_accepts(inp: BGPInputs) -> None:
    from calico.bgp.render import render_config

    out = render_config(inp, {("s", "ok"): "secret"})
    assert bird_accepts(out.text) is None, out.text
    names = bgp_names(out.text)
    assert len(names) == len(set(names)) == len(out.peerings)
    assert all(p.address not in ("198.19.0.1", "fd00:b9::1") for p in out.peerings)  # never itself

"""Resources and inputs for BGP unit tests, and `render_checked`: every config a test renders must pass `bird -p`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from calico.bgp.inputs import BGPInputs, SecretRef
from calico.bgp.render import Rendered, render_config
from calico.resources import BGPConfiguration, BGPPeer, IPPool, Node, Resource, parse_resource


def _res(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> Resource:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec})


def node(name: str, v4: str | None = None, v6: str | None = None, labels: dict[str, str] | None = None,
         **bgp: Any) -> Node:
    spec = {k: v for k, v in {"ipv4Address": v4, "ipv6Address": v6, **bgp}.items() if v is not None}
    res = _res("Node", name, {"bgp": spec} if spec else {}, labels)
    assert isinstance(res, Node)
    return res


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    res = _res("IPPool", name, {"cidr": cidr, **spec})
    assert isinstance(res, IPPool)
    return res


def peer(name: str, **spec: Any) -> BGPPeer:
    res = _res("BGPPeer", name, spec)
    assert isinstance(res, BGPPeer)
    return res


def bgp_config(name: str, **spec: Any) -> BGPConfiguration:
    res = _res("BGPConfiguration", name, spec)
    assert isinstance(res, BGPConfiguration)
    return res


def three_nodes(**h1_bgp: Any) -> list[Node]:
    return [
        node("h1", "198.19.0.1/24", "fd00:b9::1/64", **h1_bgp),
        node("h2", "198.19.0.2/24", "fd00:b9::2/64"),
        node("h3", "198.19.0.3/24"),
    ]


def inputs(
    nodes: list[Node],
    *,
    me: str = "h1",
    pools: list[IPPool] | None = None,
    peers: list[BGPPeer] | None = None,
    configs: list[BGPConfiguration] | None = None,
    blocks: set[str] | None = None,
) -> BGPInputs:
    if pools is None:
        pools = [pool("pool4", "198.18.0.0/16"), pool("pool6", "fd00:1::/48")]
    return BGPInputs(
        node_name=me,
        nodes={n.metadata.name: n for n in nodes},
        configs={c.metadata.name: c for c in configs or []},
        peers={p.metadata.name: p for p in peers or []},
        pools={p.metadata.name: p for p in pools},
        blocks=frozenset(blocks or ()),
    )


def bird_accepts(text: str) -> str | None:
    """None when `bird -p` parses the text, else its complaint."""
    if not shutil.which("bird"):
        pytest.skip("bird (bird2) is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as f:
        f.write(text)
        f.flush()
        proc = subprocess.run(["bird", "-p", "-c", f.name], capture_output=True, text=True, timeout=30, check=False)
    return None if proc.returncode == 0 else proc.stderr.strip()


def render_checked(
    inp: BGPInputs, secrets: Mapping[SecretRef, str] | None = None, prefixes: tuple[str, ...] = ("cali",)
) -> Rendered:
    rendered = render_config(inp, secrets or {}, prefixes)
    assert bird_accepts(rendered.text) is None, rendered.text
    return rendered


def block(text: str, header: str) -> str | None:
    """The body of the top-level block whose first line starts with `header` (e.g. "protocol bgp Mesh_...")."""
    m = re.search(rf"^{re.escape(header)}\b.*?\{{\n(.*?)^\}}", text, re.M | re.S)
    return None if m is None else m.group(1)


def bgp_names(text: str) -> list[str]:
    return re.findall(r"^protocol bgp (\S+) from", text, re.M)


def data_file(name: str) -> Path:
    return Path(__file__).parent / "data" / name

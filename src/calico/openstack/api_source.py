"""Neutron's view read over its REST API (what `calico-resync` uses outside the Neutron server).

Enters: the API's base URL (`OS_ENDPOINT`, e.g. http://127.0.0.1:9696) and an optional token. Leaves: a
`NeutronView`. Neutron's API returns the same dicts its plugin does, so the mapping is shared.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from calico.openstack.resync import NeutronView

COLLECTIONS = {"ports": "ports", "security_groups": "security-groups", "subnets": "subnets",
               "networks": "networks", "floating_ips": "floatingips", "address_groups": "address-groups"}


class NeutronAPIError(Exception):
    pass


def _get(base: str, path: str, token: str | None, timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(f"{base.rstrip('/')}/v2.0/{path}", headers={"Accept": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and path != "ports":  # an extension this Neutron does not have (e.g. no L3)
            return {}
        raise NeutronAPIError(f"GET /v2.0/{path}: HTTP {exc.code}: {exc.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise NeutronAPIError(f"GET {base}/v2.0/{path}: {exc}") from None


def read_view(base: str, token: str | None = None, timeout: float = 60.0) -> NeutronView:
    data = {}
    for field, path in COLLECTIONS.items():
        body = _get(base, path, token, timeout)
        data[field] = body.get(path.replace("-", "_"), [])
    return NeutronView(**data)


class NeutronClient:
    """The few calls a tool outside Neutron makes (the lab playing Nova): JSON over HTTP, errors named."""

    def __init__(self, base: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}/v2.0/{path}", data=data, method=method,
                                     headers={"Accept": "application/json", "Content-Type": "application/json"})
        if self.token:
            req.add_header("X-Auth-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else {}
        except urllib.error.HTTPError as exc:
            raise NeutronAPIError(f"{method} /v2.0/{path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise NeutronAPIError(f"{method} {self.base}/v2.0/{path}: {exc}") from None

    def port(self, port_id: str) -> dict[str, Any]:
        return self.request("GET", f"ports/{port_id}")["port"]

    def update_port(self, port_id: str, **fields: Any) -> dict[str, Any]:
        return self.request("PUT", f"ports/{port_id}", {"port": fields})["port"]

    def subnet(self, subnet_id: str) -> dict[str, Any]:
        return self.request("GET", f"subnets/{subnet_id}")["subnet"]

"""Helpers for the felix daemon tests: polling, resources, a stand-in calculation graph."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable

from calico.calculation.events import (
    DataplaneEvent,
    InSync,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from calico.datastore.keys import parse_key
from calico.resources import Resource, load_documents


async def wait_until(pred: Callable[[], bool | Awaitable[bool]], timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = pred()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


def wep(name: str, node: str = "node1", ns: str = "default", ip: str = "198.18.0.5") -> Resource:
    pod = name
    [res] = load_documents(
        f"""
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {node}-k8s-{pod}-eth0
  namespace: {ns}
  labels: {{app: web}}
spec:
  node: {node}
  orchestrator: k8s
  pod: {pod}
  endpoint: eth0
  interfaceName: cali{abs(hash(name)) % 10**11:011d}
  ipNetworks: [{ip}/32]
  profiles: [dev]
"""
    )
    return res


def profile(name: str = "dev") -> Resource:
    [res] = load_documents(
        f"""
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: {name}}}
spec:
  ingress: [{{action: Allow, source: {{selector: app == 'web'}}}}]
  egress: [{{action: Allow}}]
"""
    )
    return res


def felixconfig_json(name: str, **spec: object) -> bytes:
    doc = {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": name},
           "spec": spec}
    return json.dumps(doc).encode()


class StandInGraph:
    """The calc graph's interface with just enough behaviour for the daemon tests: local workload endpoints
    become WorkloadEndpointUpdate/Remove, the first flush after in-sync ends with InSync. `explode_on`
    makes `on_update` raise for keys containing that text (a graph bug)."""

    def __init__(self, hostname: str, explode_on: str | None = None) -> None:
        self.hostname = hostname
        self.explode_on = explode_on
        self._pending: dict[WorkloadEndpointID, DataplaneEvent] = {}
        self._known: set[WorkloadEndpointID] = set()
        self._in_sync = False
        self._sent_in_sync = False
        self.updates = 0

    def on_update(self, key: str, value: bytes | None) -> None:
        self.updates += 1
        if self.explode_on and self.explode_on in key:
            raise RuntimeError("stand-in graph bug")
        rk = parse_key(key)
        if rk is None or rk.plural != "workloadendpoints" or rk.namespace is None:
            return
        wid = WorkloadEndpointID(rk.namespace, rk.name)
        spec = None
        if value is not None:
            try:
                spec = json.loads(value).get("spec")
            except (ValueError, AttributeError):
                spec = None
        if isinstance(spec, dict) and spec.get("node") == self.hostname:
            nets = tuple(spec.get("ipNetworks") or ())
            self._pending[wid] = WorkloadEndpointUpdate(wid, spec.get("interfaceName", ""), None, nets, (), (), ())
            self._known.add(wid)
        elif wid in self._known:
            self._known.discard(wid)
            self._pending[wid] = WorkloadEndpointRemove(wid)

    def on_in_sync(self) -> None:
        self._in_sync = True

    def flush(self) -> list[DataplaneEvent]:
        out = list(self._pending.values())
        self._pending.clear()
        if self._in_sync and not self._sent_in_sync:
            self._sent_in_sync = True
            out.append(InSync())
        return out

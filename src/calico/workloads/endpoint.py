"""A workload's names and its WorkloadEndpoint resource, as Calico's CNI plugin writes them. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calico.workloads.wiring import iface_name

ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAMESPACE_LABEL = "projectcalico.org/namespace"


@dataclass(frozen=True)
class WorkloadSpec:
    """Who the workload is and what its endpoint should say."""

    name: str  # the pod (k8s) or workload name
    node: str
    namespace: str = "default"
    orchestrator: str = "k8s"
    endpoint: str = "eth0"
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[dict[str, Any], ...] = ()  # [{"name", "port", "protocol"}]
    profiles: tuple[str, ...] = ()
    iface_prefix: str = "cali"

    @property
    def endpoint_name(self) -> str:
        """`<node>-<orchestrator>-<workload>-<endpoint>`, each part's dashes doubled (Calico's WEP naming)."""
        parts = (self.node, self.orchestrator, self.name, self.endpoint)
        return "-".join(p.replace("-", "--") for p in parts)

    @property
    def iface(self) -> str:
        return iface_name(self.iface_prefix, f"{self.namespace}.{self.name}")

    @property
    def handle_id(self) -> str:
        """The IPAM handle of the workload's addresses."""
        return f"{self.orchestrator}.{self.namespace}.{self.name}"


def endpoint_resource(wl: WorkloadSpec, nets: list[str]) -> dict[str, Any]:
    """The WorkloadEndpoint document for `wl` holding `nets` (/32 and /128 CIDRs)."""
    labels = {**wl.labels, NAMESPACE_LABEL: wl.namespace, ORCHESTRATOR_LABEL: wl.orchestrator}
    spec: dict[str, Any] = {
        "orchestrator": wl.orchestrator, "node": wl.node, "endpoint": wl.endpoint, "interfaceName": wl.iface,
        "ipNetworks": nets, "profiles": list(wl.profiles),
    }
    spec["pod" if wl.orchestrator == "k8s" else "workload"] = wl.name
    if wl.ports:
        spec["ports"] = [dict(p) for p in wl.ports]
    return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
            "metadata": {"name": wl.endpoint_name, "namespace": wl.namespace, "labels": labels}, "spec": spec}

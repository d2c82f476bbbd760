"""The `ClusterInformation` kind: cluster-wide facts written by Calico itself (usually `default`).

In: a decoded ClusterInformation document. Out: a validated resource.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from calico.resources.meta import CalicoModel, Resource, empty_spec

__all__ = ["ClusterInformation", "ClusterInformationSpec"]


class ClusterInformationSpec(CalicoModel):
    clusterGUID: str | None = None
    clusterType: str | None = None
    calicoVersion: str | None = None
    datastoreReady: bool | None = None
    variant: str | None = None


class ClusterInformation(Resource):
    KIND: ClassVar[str] = "ClusterInformation"
    PLURAL: ClassVar[str] = "clusterinformations"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("clusterinformation", "clusterinfo", "clusterinfos")

    kind: Literal["ClusterInformation"] = "ClusterInformation"
    spec: ClusterInformationSpec = Field(default_factory=empty_spec(ClusterInformationSpec))

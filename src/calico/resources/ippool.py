"""The `IPPool` kind: a CIDR that Calico IPAM allocates workload (and tunnel) addresses from.

In: a decoded IPPool document. Out: a validated pool with Calico's defaults filled in
(`blockSize` 26 or 122, `ipipMode`/`vxlanMode` Never, `natOutgoing` false, `nodeSelector: all()`,
`allowedUses` Workload+Tunnel). Overlap between pools is the datastore layer's check; it can use
`ippool_overlaps`.
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from calico.resources.errors import fail, show
from calico.resources.fields import CIDR, Selector
from calico.resources.meta import CalicoModel, Resource

__all__ = ["EncapMode", "IPPool", "IPPoolSpec", "ippool_overlaps"]

EncapMode = Literal["Never", "Always", "CrossSubnet"]
AllowedUse = Literal["Workload", "Tunnel"]

_LINK_LOCAL = {4: ipaddress.ip_network("169.254.0.0/16"), 6: ipaddress.ip_network("fe80::/10")}
_BLOCK_SIZES = {4: (20, 32, 26), 6: (116, 128, 122)}  # min, max, default


class IPPoolSpec(CalicoModel):
    cidr: CIDR
    blockSize: int | None = None
    ipipMode: EncapMode = "Never"
    vxlanMode: EncapMode = "Never"
    natOutgoing: bool = False
    disabled: bool = Field(default=False, exclude_if=lambda v: not v)
    disableBGPExport: bool = Field(default=False, exclude_if=lambda v: not v)
    nodeSelector: Selector = "all()"
    allowedUses: list[AllowedUse] | None = None
    assignmentMode: Literal["Automatic", "Manual"] | None = None

    @model_validator(mode="after")
    def _check(self) -> IPPoolSpec:
        net = ipaddress.ip_network(self.cidr)
        if net.overlaps(_LINK_LOCAL[net.version]):  # type: ignore[arg-type]
            fail(f"IP pool {self.cidr} overlaps the link-local range {_LINK_LOCAL[net.version]}", "cidr")
        lo, hi, default = _BLOCK_SIZES[net.version]
        if self.blockSize is None:
            self.blockSize = default
        elif isinstance(self.blockSize, bool) or not lo <= self.blockSize <= hi:
            fail(
                f"blockSize {show(self.blockSize)} is out of range: must be {lo}-{hi} for IPv{net.version}", "blockSize"
            )
        if not self.disabled and net.prefixlen > self.blockSize:
            fail(
                f"IP pool {self.cidr} is smaller than one block (/{self.blockSize}): "
                "the prefix length must be at most the block size",
                "cidr",
            )
        if net.version == 6 and self.ipipMode != "Never":
            fail("ipipMode must be Never on an IPv6 pool", "ipipMode")
        if self.ipipMode != "Never" and self.vxlanMode != "Never":
            fail("ipipMode and vxlanMode cannot both be enabled", "vxlanMode")
        if self.allowedUses is None:
            self.allowedUses = ["Workload", "Tunnel"]
        else:
            for i, use in enumerate(self.allowedUses):
                if use in self.allowedUses[:i]:
                    fail(f"{show(use)} listed more than once", "allowedUses", i)
        return self


class IPPool(Resource):
    KIND: ClassVar[str] = "IPPool"
    PLURAL: ClassVar[str] = "ippools"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ippool", "ipp", "ipps", "pool", "pools")

    kind: Literal["IPPool"] = "IPPool"
    spec: IPPoolSpec


def ippool_overlaps(a: IPPool | IPPoolSpec | str, b: IPPool | IPPoolSpec | str) -> bool:
    """Whether two pools (or CIDRs) share any address; pools of different IP versions never do."""

    def net(x: IPPool | IPPoolSpec | str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        cidr = x.spec.cidr if isinstance(x, IPPool) else x.cidr if isinstance(x, IPPoolSpec) else x
        return ipaddress.ip_network(cidr, strict=False)

    na, nb = net(a), net(b)
    return na.version == nb.version and na.overlaps(nb)  # type: ignore[arg-type]

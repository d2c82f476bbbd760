"""The `get` tables, column for column as calicoctl prints them (`ps` and `-o wide`), and the boxed tables of
`ipam show` and the like (`boxed`). Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def _at(path: str, default: str = "") -> Callable[[Row], str]:
    keys = path.split(".")

    def get(doc: Row) -> str:
        cur: Any = doc
        for k in keys:
            if not isinstance(cur, dict) or k not in cur:
                return default
            cur = cur[k]
        if isinstance(cur, list):
            return ",".join(str(x) for x in cur)
        if isinstance(cur, bool):
            return "true" if cur else "false"
        if isinstance(cur, float) and cur.is_integer():
            return str(int(cur))
        return str(cur)

    return get


NAME: Column = ("NAME", _at("metadata.name"))
NAMESPACE: Column = ("NAMESPACE", _at("metadata.namespace"))
LABELS: Column = ("LABELS", lambda d: ",".join(f"{k}={v}" for k, v in sorted(d["metadata"].get("labels", {}).items())))

# kind -> (ps columns, extra wide columns)
COLUMNS: dict[str, tuple[list[Column], list[Column]]] = {
    "Node": ([NAME], [("ASN", _at("spec.bgp.asNumber", "(64512)")), ("IPV4", _at("spec.bgp.ipv4Address")),
                      ("IPV6", _at("spec.bgp.ipv6Address"))]),
    "WorkloadEndpoint": (
        [("WORKLOAD", lambda d: _at("spec.workload")(d) or _at("spec.pod")(d)), ("NODE", _at("spec.node")),
         ("NETWORKS", _at("spec.ipNetworks")), ("INTERFACE", _at("spec.interfaceName"))],
        [("PROFILES", _at("spec.profiles")), ("NATS", _at("spec.ipNATs"))],
    ),
    "HostEndpoint": ([NAME, ("NODE", _at("spec.node"))],
                     [("INTERFACE", _at("spec.interfaceName")), ("IPS", _at("spec.expectedIPs")),
                      ("PROFILES", _at("spec.profiles"))]),
    "Profile": ([NAME], [LABELS]),
    "Tier": ([NAME, ("ORDER", _at("spec.order"))], [("DEFAULTACTION", _at("spec.defaultAction", "Deny"))]),
    "NetworkPolicy": ([NAME], [("ORDER", _at("spec.order")), ("SELECTOR", _at("spec.selector"))]),
    "GlobalNetworkPolicy": ([NAME], [("ORDER", _at("spec.order")), ("SELECTOR", _at("spec.selector"))]),
    "NetworkSet": ([NAME], [("NETS", _at("spec.nets"))]),
    "GlobalNetworkSet": ([NAME], [("NETS", _at("spec.nets"))]),
    "IPPool": ([NAME, ("CIDR", _at("spec.cidr")), ("SELECTOR", _at("spec.nodeSelector"))],
               [("NAT", _at("spec.natOutgoing", "false")), ("IPIPMODE", _at("spec.ipipMode")),
                ("VXLANMODE", _at("spec.vxlanMode")), ("DISABLED", _at("spec.disabled", "false")),
                ("DISABLEBGPEXPORT", _at("spec.disableBGPExport", "false"))]),
    "IPReservation": ([NAME], [("CIDRS", _at("spec.reservedCIDRs"))]),
    "BGPConfiguration": ([NAME, ("LOGSEVERITY", _at("spec.logSeverityScreen")),
                          ("MESHENABLED", _at("spec.nodeToNodeMeshEnabled")), ("ASNUMBER", _at("spec.asNumber"))],
                         []),
    "BGPPeer": ([NAME, ("PEERIP", _at("spec.peerIP")), ("NODE", _at("spec.node", "(global)")),
                 ("ASN", _at("spec.asNumber"))], []),
    "FelixConfiguration": ([NAME], []),
    "ClusterInformation": ([NAME], [("GUID", _at("spec.clusterGUID")), ("TYPE", _at("spec.clusterType")),
                                    ("VERSION", _at("spec.calicoVersion"))]),
}


def render(kind: str, docs: Sequence[Row], wide: bool, namespaced_listing: bool) -> str:
    """A left-aligned table, three spaces between columns, as Go's tabwriter prints calicoctl's."""
    base, extra = COLUMNS.get(kind, ([NAME], []))
    cols = ([NAMESPACE] if namespaced_listing else []) + base + (extra if wide else [])
    rows = [[h for h, _ in cols]] + [[f(d) for _, f in cols] for d in docs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows) + "\n"


def boxed(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A table drawn with +, - and |, headers centred (odd space on the right), as calicoctl's `ipam show` and
    `node status` print theirs; the columns listed in `right` are right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    def line(cells: Sequence[str], header: bool = False) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            text = centred(str(c), w) if header else str(c).rjust(w) if i in right else str(c).ljust(w)
            out.append(f" {text} ")
        return "|" + "|".join(out) + "|"

    return "\n".join([rule, line(headers, True), rule, *(line(r) for r in rows), rule]) + "\n"

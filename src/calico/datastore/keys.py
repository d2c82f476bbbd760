"""Where each resource lives in the key space, as Calico lays it out in etcd.

`/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>` for resources, `/calico/ipam/v2/...` for
IPAM (below); pure string work, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/"
IPAM_PREFIX = "/calico/ipam/v2/"
FELIX_STATUS_PREFIX = "/calico/felix/v2/"
DHCP_PREFIX = "/calico/dhcp/v2/"  # OpenStack subnets for the DHCP agents: <region>/subnet/<subnet id>


def dhcp_subnet_prefix(region: str) -> str:
    return f"{DHCP_PREFIX}{region}/subnet/"


@dataclass(frozen=True, slots=True)
class ResourceKey:
    plural: str
    name: str
    namespace: str | None = None

    def path(self) -> str:
        if self.namespace is not None:
            return f"{RESOURCE_PREFIX}{self.plural}/{self.namespace}/{self.name}"
        return f"{RESOURCE_PREFIX}{self.plural}/{self.name}"


def kind_prefix(plural: str, namespace: str | None = None) -> str:
    """The prefix listing every resource of a kind (in one namespace when given)."""
    if namespace is not None:
        return f"{RESOURCE_PREFIX}{plural}/{namespace}/"
    return f"{RESOURCE_PREFIX}{plural}/"


def parse_key(path: str) -> ResourceKey | None:
    """The resource a key names, or None when the key is not a v3 resource key."""
    if not path.startswith(RESOURCE_PREFIX):
        return None
    parts = path[len(RESOURCE_PREFIX) :].split("/")
    if len(parts) == 2 and all(parts):
        return ResourceKey(parts[0], parts[1])
    if len(parts) == 3 and all(parts):
        return ResourceKey(parts[0], parts[2], parts[1])
    return None


# --- IPAM: libcalico-go's v2 layout -------------------------------------------------------------------------
# Blocks:     /calico/ipam/v2/assignment/ipv4/block/198.18.0.0-26       (ipv6: .../ipv6/block/fd00:1::-122)
# Affinities: /calico/ipam/v2/host/<node>/ipv4/block/198.18.0.0-26      (value: {"state": ..., "deleted": ...})
# Handles:    /calico/ipam/v2/handle/<handle id>
# Settings:   /calico/ipam/v2/config

IPAM_BLOCK_PREFIX = f"{IPAM_PREFIX}assignment/"
IPAM_HOST_PREFIX = f"{IPAM_PREFIX}host/"
IPAM_HANDLE_PREFIX = f"{IPAM_PREFIX}handle/"
IPAM_CONFIG_KEY = f"{IPAM_PREFIX}config"


def _cidr_part(cidr: str) -> tuple[int, str]:
    net = ipaddress.ip_network(cidr, strict=False)
    return net.version, f"{net.network_address}-{net.prefixlen}"


def _cidr_from_part(part: str) -> str | None:
    addr, sep, length = part.rpartition("-")
    if not sep or not length.isdigit():
        return None
    try:
        return str(ipaddress.ip_network(f"{addr}/{length}"))
    except ValueError:
        return None


def block_key(cidr: str) -> str:
    version, part = _cidr_part(cidr)
    return f"{IPAM_BLOCK_PREFIX}ipv{version}/block/{part}"


def block_prefix(version: int | None = None) -> str:
    return IPAM_BLOCK_PREFIX if version is None else f"{IPAM_BLOCK_PREFIX}ipv{version}/block/"


def parse_block_key(path: str) -> str | None:
    """The block CIDR a block key names, or None."""
    if not path.startswith(IPAM_BLOCK_PREFIX):
        return None
    parts = path[len(IPAM_BLOCK_PREFIX) :].split("/")
    if len(parts) != 3 or parts[0] not in ("ipv4", "ipv6") or parts[1] != "block":
        return None
    return _cidr_from_part(parts[2])


def affinity_key(node: str, cidr: str) -> str:
    version, part = _cidr_part(cidr)
    return f"{IPAM_HOST_PREFIX}{node}/ipv{version}/block/{part}"


def host_affinity_prefix(node: str | None = None) -> str:
    """Every affinity (node None), or every affinity of one node."""
    return IPAM_HOST_PREFIX if node is None else f"{IPAM_HOST_PREFIX}{node}/"


def parse_affinity_key(path: str) -> tuple[str, str] | None:
    """(node, block CIDR) an affinity key names, or None."""
    if not path.startswith(IPAM_HOST_PREFIX):
        return None
    parts = path[len(IPAM_HOST_PREFIX) :].split("/")
    if len(parts) != 4 or not parts[0] or parts[1] not in ("ipv4", "ipv6") or parts[2] != "block":
        return None
    cidr = _cidr_from_part(parts[3])
    return None if cidr is None else (parts[0], cidr)


def handle_key(handle_id: str) -> str:
    return f"{IPAM_HANDLE_PREFIX}{handle_id}"


def parse_handle_key(path: str) -> str | None:
    if not path.startswith(IPAM_HANDLE_PREFIX):
        return None
    rest = path[len(IPAM_HANDLE_PREFIX) :]
    return rest if rest and "/" not in rest else None

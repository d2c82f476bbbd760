"""Where each resource lives in the key space, as Calico lays it out in etcd.

`/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`; pure string work, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

RESOURCE_PREFIX = "/calico/resources/v3/projectcalico.org/"
IPAM_PREFIX = "/calico/ipam/v2/"
FELIX_STATUS_PREFIX = "/calico/felix/v2/"


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

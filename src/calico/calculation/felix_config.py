"""Felix configuration: FelixConfiguration resources in; this host's merged settings out.

Enters: FelixConfiguration changes; only `default` (cluster-wide) and `node.<hostname>` matter here.
Leaves: `ConfigUpdate` with every setting either resource sets (Calico's camelCase names; the per-node
value wins over the cluster-wide one; unset settings are left out so the dataplane applies Felix's
defaults), whenever that merged view changes. Values are frozen: lists become tuples and objects become
sorted (key, value) tuples, so the event stays immutable and comparable.
"""

from __future__ import annotations

from typing import Any

from calico.calculation.events import ConfigUpdate
from calico.resources import FelixConfiguration

__all__ = ["FelixConfigMerger", "freeze"]

GLOBAL_NAME = "default"


def freeze(value: Any) -> Any:
    """JSON-shaped data as immutable tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


class FelixConfigMerger:
    def __init__(self, hostname: str) -> None:
        self._names = (GLOBAL_NAME, f"node.{hostname}")  # lowest priority first
        self._specs: dict[str, dict[str, Any]] = {}

    def has(self, name: str) -> bool:
        """Whether a good value of this host's resource `name` is in force."""
        return name in self._specs

    def update(self, name: str, res: FelixConfiguration | None) -> bool:
        """Record a change; True if it concerns this host."""
        if name not in self._names:
            return False
        if res is None:
            self._specs.pop(name, None)
        else:
            self._specs[name] = res.spec.model_dump(mode="json", exclude_none=True)
        return True

    def merged(self) -> ConfigUpdate:
        settings: dict[str, Any] = {}
        for name in self._names:
            settings.update(self._specs.get(name, {}))
        return ConfigUpdate(tuple(sorted((k, freeze(v)) for k, v in settings.items())))

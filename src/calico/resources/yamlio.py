"""The YAML dialect of `calico.resources.loader`, kept apart so that importing resources (as calico-felix
does, which never reads YAML) does not import PyYAML; the loader imports this module on first use."""

from __future__ import annotations

import re

import yaml

__all__ = ["Dumper", "Loader"]


class Loader(yaml.SafeLoader):
    """Safe YAML loading with the YAML 1.1 surprises that Kubernetes' decoder lacks removed:
    no base-60 numbers ("6040:6050" stays a port range, not 362450), no timestamps (kept as
    text), and no "=" value tag."""


_DROPPED_TAGS = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:value",
}
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_INT = (
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_FLOAT = (
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class Dumper(yaml.SafeDumper):
    """Safe YAML output that quotes any string either YAML 1.1 readers or `Loader` would read as a
    number (e.g. "1e5", "6040:6050"), so output reloads as the same strings everywhere."""


for _resolver in (_INT, _FLOAT):
    Loader.add_implicit_resolver(*_resolver)
    Dumper.add_implicit_resolver(*_resolver)

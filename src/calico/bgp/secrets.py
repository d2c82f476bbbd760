"""BGP passwords: where a `secretKeyRef` is read from (the one I/O seam for them).

Calico reads `password.secretKeyRef` {name, key} from a Kubernetes Secret. Without Kubernetes, a secret is a
directory and each key a file in it, the layout of a Secret mounted as a volume:
`$CALICO_BGP_SECRETS_DIR/<secret name>/<key>` (default `/etc/calico/bgp-secrets`). One trailing newline is
dropped (files written with `echo` end in one). A missing or unreadable file is absent: the peering is skipped
unless the reference is `optional`.

In: the references a render needs. Out: reference -> password text, for the ones that could be read.
`SecretsDir` is the real source; `StaticSecrets` the in-memory one for tests.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from calico.bgp.inputs import SecretRef

__all__ = ["DEFAULT_SECRETS_DIR", "SecretSource", "SecretsDir", "StaticSecrets"]

log = logging.getLogger(__name__)

DEFAULT_SECRETS_DIR = "/etc/calico/bgp-secrets"
_PART = re.compile(r"[A-Za-z0-9][-._A-Za-z0-9]*\Z")  # secret names and keys; never "..", never a "/"


class SecretSource(Protocol):
    def read(self, refs: Iterable[SecretRef]) -> dict[SecretRef, str]: ...


class SecretsDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def read(self, refs: Iterable[SecretRef]) -> dict[SecretRef, str]:
        out = {}
        for name, key in refs:
            if not (_PART.match(name) and _PART.match(key)) or ".." in name or ".." in key:
                log.warning("BGP password secret %r key %r: not a usable file name", name, key)
                continue
            path = self.root / name / key
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                log.warning("BGP password %s cannot be read: %s", path, e)
                continue
            out[(name, key)] = text.removesuffix("\n").removesuffix("\r")
        return out


class StaticSecrets:
    def __init__(self, secrets: Mapping[SecretRef, str] | None = None) -> None:
        self.secrets = dict(secrets or {})

    def read(self, refs: Iterable[SecretRef]) -> dict[SecretRef, str]:
        return {ref: self.secrets[ref] for ref in refs if ref in self.secrets}

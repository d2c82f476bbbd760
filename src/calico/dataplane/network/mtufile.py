"""The MTU file: where Calico tells its CNI plugin which MTU workload interfaces should get.

In: a path (Felix's MTUFilePath, /var/lib/calico/mtu by default) and a number. Out: the file holding that number
and a newline, replaced atomically. The directory is never created: it is calico-node's (/var/lib/calico on a
real host); where it does not exist (a lab on a development machine) nothing is written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def write_mtu_file(path: str, mtu: int) -> bool:
    """True when the file now holds `mtu`; False when its directory does not exist or writing failed (logged)."""
    target = Path(path)
    if not target.parent.is_dir():
        return False
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{mtu}\n", encoding="ascii")
        os.replace(tmp, target)
    except OSError as e:
        log.warning("writing the MTU file %s: %s", path, e)
        tmp.unlink(missing_ok=True)
        return False
    return True

"""`make lab`, the README's main command, run non-interactively as a newcomer would, checking its own output: the
demo exits 0 only when every expected allowed/blocked probe held, and it tears its lab down."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab.conftest import _require_tools

pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parents[2]


def test_make_lab_runs_the_demo_and_checks_itself(tmp_path: Path) -> None:
    _require_tools("embedded")
    name = f"demo{secrets.token_hex(2)}"
    # The suite already holds the namespace lock: the Makefile must not take it again (NETNS_LOCK=).
    env = {**os.environ, "CALICO_LAB_DIR": str(tmp_path)}
    started = time.monotonic()
    res = subprocess.run(["make", "-s", "lab", f"LAB={name}", "NETNS_LOCK=", f"VENV={REPO / '.venv'}"], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    took = time.monotonic() - started
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.rstrip().endswith("demo OK"), out
    for line in ("4/4 established", "client-1 -> db: blocked (as expected)", "web-2 -> db: allowed (as expected)",
                 f"lab '{name}' is down"):
        assert line in out, line
    assert not (tmp_path / name).exists()
    assert took < 120, f"make lab took {took:.0f}s"

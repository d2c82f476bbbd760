"""Neutron-side tests: they run in the OpenStack virtual environment (`make test` runs them there)."""

from __future__ import annotations

import pytest

neutron = pytest.importorskip("neutron", reason="run with .venv-openstack/bin/python (make test does)")

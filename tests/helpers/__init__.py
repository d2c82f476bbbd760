"""Shared test helpers (real daemons, certificates). Imported by tests/conftest.py and bench/."""

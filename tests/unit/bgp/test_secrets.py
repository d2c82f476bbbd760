"""BGP passwords from files laid out as a mounted Secret: `<dir>/<secret name>/<key>`."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from calico.bgp.secrets import SecretsDir, StaticSecrets


def test_reads_files_and_drops_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "bgp-secrets").mkdir()
    (tmp_path / "bgp-secrets" / "tor").write_text("pass word\n")
    (tmp_path / "bgp-secrets" / "raw").write_text("exact\n\n")
    got = SecretsDir(tmp_path).read([("bgp-secrets", "tor"), ("bgp-secrets", "raw"), ("bgp-secrets", "missing")])
    assert got == {("bgp-secrets", "tor"): "pass word", ("bgp-secrets", "raw"): "exact\n"}


@pytest.mark.parametrize("ref", [("..", "etc"), ("s", "../../etc/passwd"), ("s/t", "k"), ("s", ".hidden")])
def test_refuses_paths_outside_the_directory(tmp_path: Path, ref: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert SecretsDir(tmp_path).read([ref]) == {}
    assert "not a usable file name" in caplog.text


def test_unreadable_is_absent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "s" / "k").mkdir(parents=True)  # a directory where the file should be
    with caplog.at_level(logging.WARNING):
        assert SecretsDir(tmp_path).read([("s", "k")]) == {}
    assert "cannot be read" in caplog.text


def test_static_secrets() -> None:
    assert StaticSecrets({("s", "k"): "v"}).read([("s", "k"), ("s", "x")]) == {("s", "k"): "v"}

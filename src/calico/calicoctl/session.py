"""What every calicoctl command needs: failing with a message and exit status 1, and the datastore named by the
CalicoAPIConfig file or the environment, opened for the length of a command."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import click

from calico.datastore import config as dsconfig
from calico.datastore.kv import KVError, KVStore


def fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


@asynccontextmanager
async def open_kv(config_file: str | None) -> AsyncIterator[KVStore]:
    """The configured datastore; any datastore error inside the block ends the command with a message."""
    try:
        cfg = dsconfig.resolve(config_file)
    except dsconfig.ConfigError as e:
        fail(f"Invalid datastore configuration: {e}")
    try:
        kv = await dsconfig.open_kv(cfg)
    except (KVError, OSError) as e:
        fail(f"Failed to connect to the datastore ({cfg.describe()}): {e}")
    try:
        yield kv
    except KVError as e:
        fail(f"Datastore error ({cfg.describe()}): {e}")
    finally:
        await kv.close()

"""`calico-resync`: compare Neutron (through its API) with the datastore and make the datastore match.

    calico-resync [--os-endpoint URL] [--network ID | --subnet ID | --port ID | --security-group ID] [--dry-run]

The datastore comes from calicoctl's sources (`--config FILE`, `DATASTORE_TYPE`/`ETCD_ENDPOINTS`, or
`/etc/calico/calicoctl.cfg`). Exit code 0: consistent now; 1: something could not be fixed; 2: an error.
"""

from __future__ import annotations

import asyncio
import os
import sys

import click

from calico.datastore.config import ConfigError, open_kv, resolve
from calico.datastore.kv import KVError
from calico.datastore.store import ResourceStore
from calico.openstack import ports, resync
from calico.openstack.api_source import NeutronAPIError, read_view
from calico.openstack.writer import Writer


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--os-endpoint", envvar="OS_ENDPOINT", required=True, help="Neutron's API (e.g. http://host:9696)")
@click.option("--os-token", envvar="OS_TOKEN", default=None, help="a Keystone token (not needed with noauth)")
@click.option("--config", "config_file", default=None, help="calicoctl configuration file")
@click.option("--network", default=None)
@click.option("--subnet", default=None)
@click.option("--port", default=None)
@click.option("--security-group", default=None)
@click.option("--dry-run", is_flag=True, help="report the differences, change nothing")
def main(os_endpoint: str, os_token: str | None, config_file: str | None, network: str | None,
         subnet: str | None, port: str | None, security_group: str | None, dry_run: bool) -> None:
    scope = resync.Scope(network=network, subnet=subnet, port=port, security_group=security_group)
    try:
        view = read_view(os_endpoint, os_token)
        cfg = resolve(config_file, dict(os.environ))
    except (NeutronAPIError, ConfigError) as exc:
        click.echo(f"calico-resync: {exc}", err=True)
        sys.exit(2)
    docs, problems = resync.desired(view, scope)
    if scope.everything:
        docs.append(ports.no_port_security_profile())

    async def run() -> object:
        kv = await open_kv(cfg)
        try:
            return await Writer(ResourceStore(kv), dry_run=dry_run).converge(docs, owned=resync.owned_by(scope, view))
        finally:
            await kv.close()

    try:
        stats = asyncio.run(run())
    except KVError as exc:
        click.echo(f"calico-resync: datastore ({cfg.describe()}): {exc}", err=True)
        sys.exit(2)
    for problem in problems:
        click.echo(f"cannot map {problem}", err=True)
    click.echo(("would have " if dry_run else "") + str(stats))
    sys.exit(1 if problems or getattr(stats, "failed", None) else 0)

"""`calicoctl explain`: which tier, policy and rule decide a flow, from the datastore (see `calico.explain`)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from calico.datastore import config as dsconfig
from calico.datastore.kv import KVError
from calico.explain import cli as explain_cli


async def _explain(config: str | None, src: str, dst: str, opts: explain_cli.FlowOptions) -> int:
    try:
        cfg = dsconfig.resolve(config)
        kv = await dsconfig.open_kv(cfg)
    except (dsconfig.ConfigError, KVError, OSError) as e:
        return explain_cli.error(f"datastore: {e}")
    try:
        return await explain_cli.run(kv, src, dst, opts)
    finally:
        await kv.close()


@click.command()
@click.option("--src", required=True, help="NAMESPACE/NAME of a workload endpoint, hep:NAME, or an IP address.")
@click.option("--dst", required=True, help="NAMESPACE/NAME of a workload endpoint, hep:NAME, or an IP address.")
@explain_cli.flow_options
@click.pass_obj
def explain(ctx: Any, src: str, dst: str, **kw: Any) -> None:
    """Explain a flow: the tiers, policies and rules that decide it (exit 0 allow, 1 deny, 2 error)."""
    sys.exit(asyncio.run(_explain(ctx.config, src, dst, explain_cli.options(**kw))))

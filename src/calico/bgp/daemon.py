"""`calico-bgp-daemon` (what `calico-node -confd` runs): the datastore, rendered into BIRD's config, kept current.

In: the datastore (a `Syncer` over Nodes, BGPConfigurations, BGPPeers, IPPools and this node's block
affinities), BGP passwords (`calico.bgp.secrets`). Out: `$CALICO_CONFD_DIR/bird.cfg`, checked by BIRD before it
replaces the running one, and `configure` on `$CALICO_RUN_DIR/bird.ctl` (see `calico.bgp.writer`).

Nothing is rendered before the syncer is in sync (a half-read datastore would drop sessions); then every burst
of changes is rendered once, `debounce` seconds after it started. Every `refresh_interval` the render runs
again even without a change: passwords are files nobody watches, and a BIRD that started in the meantime gets
its `configure`. Bad data never stops the daemon: a resource that does not decode is ignored (`BGPState`), a
peer that cannot be configured is skipped (`plan_peerings`), each problem is logged once when it appears and
once when it clears; if this node cannot be rendered at all, BIRD keeps what it runs.

Environment: `NODENAME` (else the host name), the datastore variables calicoctl reads (`DATASTORE_TYPE`,
`ETCD_ENDPOINTS`, `CALICO_EMBEDDED_PATH`, ...; `calico.datastore.config`), `CALICO_CONFD_DIR` (default
`/etc/calico/confd/config`), `CALICO_RUN_DIR` (default `/var/run/calico`), `CALICO_BGP_SECRETS_DIR` (default
`/etc/calico/bgp-secrets`), `FELIX_INTERFACEPREFIX` (workload interfaces, default `cali`; a comma list),
`BGP_LOGSEVERITYSCREEN` (this daemon's log level, default info). Exit codes: 0 stopped by SIGTERM/SIGINT,
1 bad environment or the datastore cannot be opened (the supervisor restarts it with back-off).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from calico.bgp.bird import CONTROL_SOCKET, DEFAULT_RUN_DIR, BirdSocket
from calico.bgp.inputs import RenderError
from calico.bgp.render import render_config
from calico.bgp.secrets import DEFAULT_SECRETS_DIR, SecretsDir, SecretSource
from calico.bgp.state import BGPState
from calico.bgp.writer import ConfigWriter, Outcome
from calico.datastore import config as dsconfig
from calico.datastore.daemon import serve
from calico.datastore.kv import KVStore
from calico.datastore.syncer import StatusUpdate, Syncer, SyncStatus

__all__ = ["BGPRenderer", "DaemonConfig", "main"]

log = logging.getLogger("calico.bgp")

DEFAULT_CONFD_DIR = "/etc/calico/confd/config"
CONFIG_FILE = "bird.cfg"
_IFACE_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,14}\Z")


@dataclass(frozen=True)
class DaemonConfig:
    node_name: str
    confd_dir: Path
    run_dir: Path
    secrets_dir: Path
    interface_prefixes: tuple[str, ...] | None  # FELIX_INTERFACEPREFIX; None: Felix's from the datastore
    log_level: str

    @property
    def config_path(self) -> Path:
        return self.confd_dir / CONFIG_FILE

    @property
    def socket_path(self) -> Path:
        return self.run_dir / CONTROL_SOCKET

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DaemonConfig:
        """Raises ValueError naming the variable when one is unusable."""
        prefixes: tuple[str, ...] | None = None
        if env.get("FELIX_INTERFACEPREFIX") is not None:
            prefixes = tuple(p.strip() for p in env["FELIX_INTERFACEPREFIX"].split(",") if p.strip())
        if prefixes is not None and (not prefixes or not all(_IFACE_PREFIX.match(p) for p in prefixes)):
            raise ValueError(f"FELIX_INTERFACEPREFIX {env.get('FELIX_INTERFACEPREFIX')!r}: interface name prefixes")
        level = env.get("BGP_LOGSEVERITYSCREEN", "info").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "FATAL", "CRITICAL"):
            raise ValueError(f"BGP_LOGSEVERITYSCREEN {level!r}: one of debug, info, warning, error, fatal")
        return cls(
            node_name=env.get("NODENAME") or socket.gethostname(),
            confd_dir=Path(env.get("CALICO_CONFD_DIR") or DEFAULT_CONFD_DIR),
            run_dir=Path(env.get("CALICO_RUN_DIR") or DEFAULT_RUN_DIR),
            secrets_dir=Path(env.get("CALICO_BGP_SECRETS_DIR") or DEFAULT_SECRETS_DIR),
            interface_prefixes=prefixes,
            log_level="CRITICAL" if level == "FATAL" else level,
        )


class BGPRenderer:
    def __init__(
        self,
        kv: KVStore,
        node_name: str,
        writer: ConfigWriter,
        secrets: SecretSource,
        interface_prefixes: Sequence[str] | None = None,
        debounce: float = 0.1,
        refresh_interval: float = 30.0,
    ) -> None:
        self.state = BGPState(node_name)
        self.syncer = Syncer(kv, self.state.prefixes())
        self.writer = writer
        self.secrets = secrets
        # As Felix takes it: the environment first, else FelixConfiguration, else Felix's default.
        self.interface_prefixes = tuple(interface_prefixes) if interface_prefixes else None
        self.debounce = debounce
        self.refresh_interval = refresh_interval
        self.in_sync = False
        self.last_outcome: Outcome | None = None
        self._changed = asyncio.Event()
        self._problems: set[str] = set()

    async def run(self) -> None:
        """Follow the datastore and keep the configuration current, until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._follow())
            tasks.create_task(self._render_loop())

    async def _follow(self) -> None:
        async for event in self.syncer.updates():
            if isinstance(event, StatusUpdate):
                if event.status is SyncStatus.IN_SYNC and not self.in_sync:
                    self.in_sync = True
                    self._changed.set()
            elif self.state.apply(event):
                self._changed.set()

    async def _render_loop(self) -> None:
        first = True
        while True:
            with contextlib.suppress(TimeoutError):  # a timeout is the periodic refresh
                await asyncio.wait_for(self._changed.wait(), self.refresh_interval)
            if not self.in_sync:
                continue
            if self._changed.is_set() and not first:
                await asyncio.sleep(self.debounce)  # let the rest of a burst arrive
            self._changed.clear()
            first = False
            await self.render_and_apply()

    async def render_and_apply(self) -> Outcome | None:
        """One render of the current state; None when nothing could be rendered (BIRD keeps what it runs)."""
        inputs = self.state.inputs()
        try:
            prefixes = self.interface_prefixes or self.state.interface_prefixes() or ("cali",)
            rendered = render_config(inputs, self.secrets.read(inputs.secret_refs()), prefixes)
        except RenderError as e:
            self._report({f"cannot render BIRD's configuration: {e}"})
            return None
        except Exception:  # a bug meeting odd data: keep the running config, keep the daemon
            log.exception("rendering BIRD's configuration failed; BIRD keeps what it runs")
            return None
        self._report(set(rendered.problems))
        outcome = await self.writer.apply(rendered.text)
        if outcome is not Outcome.UNCHANGED and outcome is not self.last_outcome:
            log.info("BIRD configuration %s (%d sessions)", outcome.value, len(rendered.peerings))
        self.last_outcome = outcome
        return outcome

    def _report(self, problems: set[str]) -> None:
        for p in sorted(problems - self._problems):
            log.warning("%s", p)
        for p in sorted(self._problems - problems):
            log.info("resolved: %s", p)
        self._problems = problems

    async def run_once(self) -> Outcome | None:
        """Read the datastore to in-sync, render once, apply; for `--once`."""
        updates = self.syncer.updates()
        try:
            async for event in updates:
                if isinstance(event, StatusUpdate):
                    if event.status is SyncStatus.IN_SYNC:
                        break
                else:
                    self.state.apply(event)
        finally:
            await updates.aclose()  # type: ignore[attr-defined]
        return await self.render_and_apply()


async def _serve(cfg: DaemonConfig, ds: dsconfig.DatastoreConfig, once: bool) -> int:
    async def body(kv: KVStore) -> int:
        writer = ConfigWriter(cfg.config_path, BirdSocket(cfg.socket_path))
        renderer = BGPRenderer(kv, cfg.node_name, writer, SecretsDir(cfg.secrets_dir), cfg.interface_prefixes)
        log.info("node %s: %s -> %s (BIRD at %s)", cfg.node_name, ds.describe(), cfg.config_path, cfg.socket_path)
        if once:
            outcome = await renderer.run_once()
            return 0 if outcome in (Outcome.UNCHANGED, Outcome.RELOADED, Outcome.WRITTEN) else 1
        await renderer.run()
        return 0

    return await serve(ds, body, log)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="calico-bgp-daemon", description="Render Calico's BGP configuration for BIRD 2 and keep it current."
    )
    parser.add_argument("--once", action="store_true", help="render once, apply, and exit (1 if not applied)")
    parser.add_argument("-c", "--config", default=None, help="CalicoAPIConfig file for the datastore")
    args = parser.parse_args(argv)
    try:
        cfg = DaemonConfig.from_env(os.environ)
        ds = dsconfig.resolve(args.config)
    except (ValueError, dsconfig.ConfigError) as e:
        print(f"calico-bgp-daemon: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=cfg.log_level, format="%(asctime)s %(levelname)s calico-bgp-daemon: %(message)s", stream=sys.stderr
    )
    return asyncio.run(_serve(cfg, ds, args.once))


if __name__ == "__main__":
    sys.exit(main())

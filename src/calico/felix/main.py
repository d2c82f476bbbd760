"""`calico-felix [--config-file PATH]`: the per-host agent's entry point.

Enters: command-line arguments and the environment (FELIX_* parameters; the datastore connection from
FELIX_DATASTORETYPE / FELIX_ETCD* / FELIX_EMBEDDEDPATH, else calicoctl's DATASTORE_TYPE, ETCD_*,
CALICO_EMBEDDED_PATH). Leaves: a running `FelixDaemon` and the process exit code:

    0    stopped by SIGTERM/SIGINT
    1    fatal: bad local configuration, or the chosen dataplane backend cannot be loaded
    129  a configuration change needs a restart (the supervisor starts Felix again)

The dataplane is built from `FelixConfig.dataplane_config()` by `calico.dataplane.factory`, which imports
only the chosen backend (see `calico.felix.driver.kernel_driver`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from calico.datastore.config import DatastoreConfig, open_kv
from calico.datastore.kv import KVError, KVStore
from calico.felix.config import DEFAULT_CONFIG_FILE, ConfigError, FelixConfig
from calico.felix.daemon import EXIT_FATAL, EXIT_OK, FelixDaemon
from calico.felix.driver import DriverFactory, kernel_driver
from calico.felix.logs import LogSetup, configure_logging

log = logging.getLogger("calico.felix")

__all__ = ["main", "run"]


async def _open_datastore(cfg: DatastoreConfig, stopping: asyncio.Event) -> KVStore | None:
    """Connect, retrying while the datastore is unreachable; None if stopped first."""
    delay = 0.5
    while not stopping.is_set():
        try:
            return await open_kv(cfg)
        except (KVError, OSError) as e:
            log.warning("cannot open %s (%s); retrying in %.1fs", cfg.describe(), e, delay)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
        except TimeoutError:
            delay = min(delay * 2, 30.0)
    return None


async def run(
    config: FelixConfig,
    env: Mapping[str, str] | None = None,
    *,
    driver_factory: DriverFactory | None = None,
    log_setup: LogSetup | None = None,
) -> int:
    """Open the datastore, run the daemon until a signal or a restart-worthy change; the exit code."""
    try:
        ds = config.datastore_config(env)
    except ConfigError as e:
        log.error("%s", e)
        return EXIT_FATAL
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    daemon: FelixDaemon | None = None

    def on_signal() -> None:
        stopping.set()
        if daemon is not None:
            daemon.request_stop()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        log.info("opening datastore: %s", ds.describe())
        kv = await _open_datastore(ds, stopping)
        if kv is None:
            return EXIT_OK
        try:
            daemon = FelixDaemon(config, kv, driver_factory or kernel_driver, log_setup=log_setup)
            if stopping.is_set():
                return EXIT_OK
            return await daemon.run()
        finally:
            await kv.close()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="calico-felix", description="Calico's per-host policy and routing agent.")
    parser.add_argument(
        "-c", "--config-file", default=None,
        help=f"INI file with a [global] section of Felix parameters (default {DEFAULT_CONFIG_FILE}, if present)",
    )
    args = parser.parse_args(argv)
    try:
        config = FelixConfig.load(
            os.environ, args.config_file or DEFAULT_CONFIG_FILE, config_file_required=args.config_file is not None
        )
    except ConfigError as e:
        print(f"calico-felix: {e}", file=sys.stderr)
        return EXIT_FATAL
    setup = configure_logging(config)
    # Everything imported so far (pydantic schemas, modules) lives as long as the process: move it out of the
    # collector's generations so the start-of-day snapshot's allocations do not keep re-scanning it (~80 ms).
    gc.freeze()
    try:
        return asyncio.run(run(config, os.environ, log_setup=setup))
    finally:
        setup.close()


if __name__ == "__main__":
    sys.exit(main())

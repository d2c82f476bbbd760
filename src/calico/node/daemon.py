"""calico-node's main run: register the Node, then supervise the children and keep the Node current.

In: `NodeSettings`, the environment (passed on to the children; the datastore from calicoctl's variables).
Out: the exit code: 0 after SIGTERM/SIGINT (children stopped, kernel state left in place), 1 when the node
cannot start (bad datastore settings, the BGP renderer missing, an address conflict or no address).

Order: signal handlers first (a stop during a slow start is honoured), then the datastore (retried with
back-off while unreachable, as Calico's startup waits for it), the Node, then the supervisor and the refresh
loop (every AUTODETECT_POLL_INTERVAL; its failures are logged, never fatal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping

from calico.datastore.config import ConfigError, open_kv, resolve
from calico.datastore.kv import KVError, KVStore
from calico.datastore.store import ResourceStore, StoreError
from calico.node.backoff import Backoff
from calico.node.children import node_children
from calico.node.hostnet import HostNetwork, NetlinkHostNetwork
from calico.node.registration import NodeRegistrar, RegistrationError
from calico.node.settings import NodeSettings
from calico.node.supervisor import Supervisor

__all__ = ["EXIT_FATAL", "EXIT_OK", "run_node"]

log = logging.getLogger("calico.node")

EXIT_OK = 0
EXIT_FATAL = 1


class _Run:
    def __init__(self, settings: NodeSettings, env: Mapping[str, str], net: HostNetwork) -> None:
        self.settings = settings
        self.env = env
        self.net = net
        self.stopping = asyncio.Event()
        self.supervisor: Supervisor | None = None

    def stop(self) -> None:
        log.info("stop requested")
        self.stopping.set()
        if self.supervisor is not None:
            self.supervisor.request_stop()

    async def pause(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def connect_and_register(self) -> tuple[KVStore, NodeRegistrar] | None:
        """Open the datastore and register the Node, retrying while the datastore is unreachable;
        None if stopped first. RegistrationError (bad data, conflict) is not retried."""
        ds = resolve(None, self.env)
        log.info("datastore: %s", ds.describe())
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self.stopping.is_set():
            kv: KVStore | None = None
            try:
                kv = await open_kv(ds)
                registrar = NodeRegistrar(self.settings, ResourceStore(kv), self.net)
                await registrar.register()
                return kv, registrar
            except (KVError, OSError) as e:
                delay = backoff.delay(0.0)
                log.warning("datastore %s not usable yet (%s); retrying in %.1fs", ds.describe(), e, delay)
            except BaseException:
                if kv is not None:
                    await kv.close()
                raise
            if kv is not None:
                await kv.close()
            await self.pause(delay)
        return None

    async def keep_current(self, registrar: NodeRegistrar) -> None:
        while not await self.pause(self.settings.poll_interval):
            try:
                await registrar.refresh()
            except (KVError, OSError, StoreError) as e:
                log.warning("cannot refresh Node %s: %s", self.settings.nodename, e)
            except Exception:  # a refresh must never take the node down
                log.exception("refreshing Node %s failed", self.settings.nodename)

    async def main(self, startup_only: bool) -> int:
        s = self.settings
        log.info("calico-node %s starting: backend %s", s.nodename, s.backend)
        connected = await self.connect_and_register()
        if connected is None:
            return EXIT_OK
        kv, registrar = connected
        try:
            if startup_only:
                return EXIT_OK
            for d in (s.run_dir, s.confd_dir):
                d.mkdir(parents=True, exist_ok=True)
            self.supervisor = Supervisor(node_children(s, self.env))
            if self.stopping.is_set():
                return EXIT_OK
            refresh = asyncio.create_task(self.keep_current(registrar))
            try:
                await self.supervisor.run()
            finally:
                refresh.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresh
            log.info("calico-node %s stopped", s.nodename)
            return EXIT_OK
        finally:
            await kv.close()


async def run_node(
    settings: NodeSettings, env: Mapping[str, str], *, net: HostNetwork | None = None, startup_only: bool = False
) -> int:
    """The whole calico-node run (module docstring); `startup_only` registers the Node and returns."""
    run = _Run(settings, env, net or NetlinkHostNetwork())
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, run.stop)
    try:
        return await run.main(startup_only)
    except (ConfigError, RegistrationError) as e:
        log.error("%s", e)
        return EXIT_FATAL
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

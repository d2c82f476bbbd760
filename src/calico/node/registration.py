"""Registering this host's Node resource and keeping it current: the datastore side of calico-node.

In: `NodeSettings`, a `ResourceStore` and a `HostNetwork`. Out: the Node `<NODENAME>` created or updated
(compare-and-swap on its resourceVersion, retried on a conflict) with the detected addresses and AS number,
and the node name written to `CALICO_NODENAME_FILE`.

`register()` (startup) raises `RegistrationError` when no address can be found, when another Node already
uses ours (unless DISABLE_NODE_IP_CHECK), or when the Node would be invalid: calico-node then exits non-zero.
`refresh()` (every AUTODETECT_POLL_INTERVAL) detects again and writes only on a change; there a failure is
logged and the registered Node is left as it is (never handing our old address to nobody, never taking
another node's).
"""

from __future__ import annotations

import logging

from calico.datastore.kv import KVError
from calico.datastore.store import AlreadyExists, Conflict, NotFound, ResourceStore, StoreError
from calico.ipam import IPAMError
from calico.node.addresses import AddressError, resolve_family
from calico.node.hostnet import HostNetwork
from calico.node.nodespec import address_conflicts, bgp_addresses, desired_node
from calico.node.settings import NodeSettings
from calico.node.tunnel import allocate_tunnel_addresses, needs_tunnel_addresses
from calico.resources import IPPool, Node, ResourceError

__all__ = ["NodeRegistrar", "RegistrationError"]

log = logging.getLogger(__name__)

CAS_ATTEMPTS = 5


class RegistrationError(Exception):
    """The Node cannot be registered; the message says why."""


class NodeRegistrar:
    def __init__(self, settings: NodeSettings, store: ResourceStore, net: HostNetwork) -> None:
        self.settings = settings
        self.store = store
        self.net = net

    async def register(self) -> Node:
        node = await self._write_node()
        self._write_nodename_file()
        return await self._tunnel_addresses(node)

    async def refresh(self) -> Node | None:
        try:
            node = await self._write_node()
        except RegistrationError as e:
            log.error("keeping the registered Node %s as it is: %s", self.settings.nodename, e)
            return None
        return await self._tunnel_addresses(node)

    async def _get(self) -> Node | None:
        try:
            return await self.store.get("Node", self.settings.nodename)  # type: ignore[return-value]
        except NotFound:
            return None

    async def _write_node(self) -> Node:
        name = self.settings.nodename
        for _ in range(CAS_ATTEMPTS):
            existing = await self._get()
            wanted = await self._desired(existing)
            if existing is not None and wanted.spec == existing.spec:
                return existing
            try:
                if existing is None:
                    stored = await self.store.create(wanted)
                    log.info("created Node %s: %s", name, _describe(wanted))
                else:
                    stored = await self.store.update(wanted)
                    log.info("updated Node %s: %s (was %s)", name, _describe(wanted), _describe(existing))
                return stored  # type: ignore[return-value]
            except (AlreadyExists, Conflict, NotFound) as e:
                log.info("Node %s changed while we wrote it (%s); reading it again", name, e)
        raise RegistrationError(f"Node {name}: still changing after {CAS_ATTEMPTS} attempts to write it")

    async def _desired(self, existing: Node | None) -> Node:
        s = self.settings
        old_v4, old_v6 = bgp_addresses(existing)
        if s.backend == "none":  # policy only: Calico writes no BGP details
            v4, v6, asn = old_v4, old_v6, None
        else:
            try:
                v4 = await resolve_family(s.ipv4, old_v4, self.net)
                v6 = await resolve_family(s.ipv6, old_v6, self.net)
            except AddressError as e:
                raise RegistrationError(str(e)) from None
            if not v4 and not v6:
                raise RegistrationError(
                    f"no IPv4 or IPv6 address configured or detected, required for Calico networking "
                    f"(CALICO_NETWORKING_BACKEND={s.backend})"
                )
            asn = s.as_number
        try:
            wanted = desired_node(existing, s.nodename, v4, v6, asn)
        except ResourceError as e:
            raise RegistrationError(f"Node {s.nodename} would be invalid: {e}") from None
        if (v4, v6) != (old_v4, old_v6) and s.check_ip_conflicts:
            others = await self.store.list("Node")
            problems = address_conflicts(s.nodename, v4, v6, others)  # type: ignore[arg-type]
            if problems:
                raise RegistrationError("address conflict: " + "; ".join(problems))
        return wanted

    def _write_nodename_file(self) -> None:
        path = self.settings.nodename_file
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(self.settings.nodename)
            tmp.replace(path)
        except OSError as e:
            log.warning("cannot write the node name to %s: %s", path, e)

    async def _tunnel_addresses(self, node: Node) -> Node:
        pools: list[IPPool] = await self.store.list("IPPool")  # type: ignore[assignment]
        if not needs_tunnel_addresses(node, pools):
            return node
        try:
            return await allocate_tunnel_addresses(self.store.kv, node, pools)
        except (IPAMError, KVError, StoreError) as e:  # retried at the next refresh; never fatal
            log.error("Node %s: VXLAN tunnel addresses not updated: %s", node.metadata.name, e)
            return node


def _describe(node: Node) -> str:
    bgp = node.spec.bgp
    if bgp is None:
        return "no BGP addresses"
    parts = [f"ipv4Address={bgp.ipv4Address}" if bgp.ipv4Address else "",
             f"ipv6Address={bgp.ipv6Address}" if bgp.ipv6Address else "",
             f"asNumber={bgp.asNumber}" if bgp.asNumber is not None else ""]
    return " ".join(p for p in parts if p) or "no BGP addresses"


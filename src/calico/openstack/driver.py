"""The ML2 mechanism driver `calico`: runs inside the Neutron server and keeps the datastore in step.

Enters: ML2 port/network postcommit calls, port binding requests, and neutron-lib callbacks for security
groups, their rules, address groups and floating IPs. Leaves: datastore writes (through `DatastoreThread`,
after Neutron's commit), port bindings (VIF type `tap` on hosts whose Felix reports), and, from the elected
leader only, periodic resyncs, port status from Felix's endpoint status and agent records from Felix's liveness.

A write that fails on the datastore is retried briefly, then left to the next resync, which runs soon
after a failure (never on the request's critical path for long).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg

from calico.datastore.keys import FELIX_STATUS_PREFIX, dhcp_subnet_prefix
from calico.openstack import names, options, ports, resync, secgroups, status, subnets
from calico.openstack.bridge import DatastoreThread
from calico.openstack.election import Election
from calico.openstack.writer import Stats, Writer

log = logging.getLogger(__name__)

BINDABLE_TYPES = ("local", "flat")
AGENT_TYPE = "Calico per-host agent (felix)"
AGENT_BINARY = "calico-felix"
STATUS_MAP = {"up": n_const.PORT_STATUS_ACTIVE, "down": n_const.PORT_STATUS_DOWN, "error": n_const.PORT_STATUS_ERROR}
RETRIES = (0.1, 0.3, 1.0)
AGENT_REPORT_INTERVAL = 30.0  # Neutron's agents report every 30 s (report_interval) and count as dead after 75


def _admin() -> Any:
    return n_context.get_admin_context()


class CalicoMechanismDriver(api.MechanismDriver):
    """Binds `normal` ports on local and flat networks as tap devices and maps Neutron to Calico."""

    def initialize(self) -> None:
        options.register()
        self.conf = cfg.CONF.calico
        self.ds = DatastoreThread(options.datastore_config())
        self.election = Election(f"{socket.gethostname()}:{os.getpid()}:{id(self)}", self.conf.election_ttl)
        self._resync_needed = threading.Event()
        self._stop = threading.Event()
        self._leader = False
        self._wake = threading.Event()  # the leader's loop: stop, or Felix's status changed
        self._status = status.StatusFold(f"{FELIX_STATUS_PREFIX}{self.conf.openstack_region}/host/")
        self._status_watch: concurrent.futures.Future[None] | None = None
        self._next_heartbeat = 0.0
        self._worker: threading.Thread | None = None
        self._subscriptions = [(cb, res, ev) for res, evs, cb in (
            (resources.SECURITY_GROUP, (events.AFTER_CREATE, events.AFTER_UPDATE), self._sg_changed),
            (resources.SECURITY_GROUP, (events.AFTER_DELETE,), self._sg_deleted),
            (resources.SECURITY_GROUP_RULE, (events.AFTER_CREATE, events.AFTER_DELETE), self._sg_rule_changed),
            (resources.ADDRESS_GROUP, (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE),
             self._address_group_changed),
            (resources.FLOATING_IP, (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE),
             self._floating_ip_changed),
            (resources.PROCESS, (events.AFTER_INIT,), self._process_started),
        ) for ev in evs]
        for cb, res, ev in self._subscriptions:
            registry.subscribe(cb, res, ev)
        log.info("calico: mechanism driver using the %s", self.ds.cfg.describe())

    @property
    def connectivity(self) -> str:
        return portbindings.CONNECTIVITY_L2  # routed, but Neutron must see L2 to bind ports without an IP

    # --- binding ----------------------------------------------------------------------------------

    def bind_port(self, context: Any) -> None:
        port = context.current
        vnic = port.get(portbindings.VNIC_TYPE, portbindings.VNIC_NORMAL)
        if vnic != portbindings.VNIC_NORMAL:
            log.info("calico: not binding port %s: vnic_type %s is not normal", port["id"], vnic)
            return
        if self.conf.require_felix_alive and not self.felix_alive(context.host):
            log.warning("calico: not binding port %s to %s: no live Felix reports from that host",
                        port["id"], context.host)
            return
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in BINDABLE_TYPES:
                context.set_binding(segment[api.ID], portbindings.VIF_TYPE_TAP,
                                    {portbindings.CAP_PORT_FILTER: True})
                return
            log.info("calico: not binding port %s on segment %s: network type %s is not local or flat",
                     port["id"], segment[api.ID], segment[api.NETWORK_TYPE])

    def felix_alive(self, host: str | None) -> bool:
        if not host:
            return False
        key = f"{FELIX_STATUS_PREFIX}{self.conf.openstack_region}/host/{host}/status"
        try:
            return self.ds.call(lambda w: w.store.kv.get(key), timeout=5) is not None
        except Exception as exc:
            log.warning("calico: cannot read Felix's liveness for %s: %s", host, exc)
            return False

    # --- subnets (for the DHCP agents) --------------------------------------------------------------

    def create_subnet_postcommit(self, context: Any) -> None:
        self._subnet_changed(context.current)

    def update_subnet_postcommit(self, context: Any) -> None:
        self._subnet_changed(context.current)

    def delete_subnet_postcommit(self, context: Any) -> None:
        key = dhcp_subnet_prefix(self.conf.openstack_region) + context.current["id"]
        self._call(f"subnet {context.current['id']}", lambda w: w.remove_raw(key))

    def _subnet_changed(self, subnet: Mapping[str, Any]) -> None:
        key = dhcp_subnet_prefix(self.conf.openstack_region) + subnet["id"]
        data = subnets.record(subnet)
        self._call(f"subnet {subnet['id']}", lambda w: w.put_raw(key, data) if data else w.remove_raw(key))

    # --- ports --------------------------------------------------------------------------------------

    def create_port_postcommit(self, context: Any) -> None:
        self._port_changed(context.current, None)

    def update_port_postcommit(self, context: Any) -> None:
        self._port_changed(context.current, context.original)

    def delete_port_postcommit(self, context: Any) -> None:
        self._port_gone(context.current)

    def _is_endpoint(self, port: Mapping[str, Any] | None) -> bool:
        return bool(port and ports.is_vm_port(port) and ports.host_of(port)
                    and port.get(portbindings.VIF_TYPE) == portbindings.VIF_TYPE_TAP)

    def _port_changed(self, port: Mapping[str, Any], original: Mapping[str, Any] | None) -> None:
        docs = self._port_docs(port) if self._is_endpoint(port) else []
        stale = []
        if original and self._is_endpoint(original) and (
                not docs or ports.host_of(original) != ports.host_of(port)
                or original.get("device_id") != port.get("device_id")):
            stale.append(_endpoint_key(original))  # unbound, migrated or re-attached: its old name goes
        stale.append(("NetworkSet", names.aap_set_name(port["id"])))  # kept when still in docs
        self._write(f"port {port['id']}", docs, stale)

    def _port_gone(self, port: Mapping[str, Any]) -> None:
        stale = [("NetworkSet", names.aap_set_name(port["id"]))]
        if ports.host_of(port):
            stale.append(_endpoint_key(port))
        self._write(f"port {port['id']}", [], stale)

    def _port_docs(self, port: Mapping[str, Any]) -> list[dict[str, Any]]:
        ctx = _admin()
        plugin = directory.get_plugin()
        subnet_ids = [f["subnet_id"] for f in port.get("fixed_ips") or ()]
        subnets = plugin.get_subnets(ctx, filters={"id": subnet_ids}) if subnet_ids else []
        networks = plugin.get_networks(ctx, filters={"id": [port["network_id"]]})
        fips = _floating_ips(ctx, {"port_id": [port["id"]]})
        view = resync.NeutronView(subnets=subnets, networks=networks, floating_ips=fips)
        return resync.port_documents(port, view)

    def _ports_by_id(self, port_ids: list[str]) -> None:
        if not port_ids:
            return
        for port in directory.get_plugin().get_ports(_admin(), filters={"id": port_ids}):
            self._port_changed(port, None)

    # --- security groups, address groups, floating IPs (neutron-lib callbacks) -----------------------

    def _sg_changed(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        # The group as the event carries it: a default group is announced inside the transaction that makes
        # it, where a fresh read would not see its rules yet.
        state = payload.latest_state if payload.states else None
        if isinstance(state, Mapping) and "security_group_rules" in state:
            self._write_group(payload.resource_id, state)
        else:
            self._write_group(payload.resource_id)

    def _sg_deleted(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        self._write(f"security group {payload.resource_id}", [],
                    [("NetworkPolicy", names.sg_policy_name(payload.resource_id))])

    def _sg_rule_changed(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        sg_id = (payload.metadata or {}).get("security_group_id")
        if not sg_id and payload.states:
            sg_id = payload.latest_state.get("security_group_id")
        if sg_id:
            self._write_group(sg_id)

    def _address_group_changed(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        sgs = directory.get_plugin().get_security_groups(_admin())
        for sg_id in secgroups.address_group_users(sgs, payload.resource_id):
            self._write_group(sg_id)

    def _floating_ip_changed(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        port_ids = {s.get("port_id") for s in payload.states or () if isinstance(s, Mapping)}
        self._ports_by_id(sorted(p for p in port_ids if p))

    def _write_group(self, sg_id: str, sg: Mapping[str, Any] | None = None) -> None:
        ctx = _admin()
        plugin = directory.get_plugin()
        found = [sg] if sg is not None else plugin.get_security_groups(ctx, filters={"id": [sg_id]})
        if not found:
            return
        ag_ids = sorted({r["remote_address_group_id"] for r in found[0].get("security_group_rules") or ()
                         if r.get("remote_address_group_id")})
        ags = plugin.get_address_groups(ctx, filters={"id": ag_ids}) if ag_ids else []
        problems: list[str] = []
        doc = secgroups.policy(found[0], resync.address_groups(resync.NeutronView(address_groups=ags)), problems)
        for problem in problems:
            log.error("calico: %s (the rule is left out: it allows nothing)", problem)
        self._write(f"security group {sg_id}", [doc], [])

    # --- writing ------------------------------------------------------------------------------------

    def _write(self, what: str, docs: list[dict[str, Any]], stale: list[tuple[str, str]]) -> None:
        keep = {(d["kind"], d["metadata"]["name"]) for d in docs}

        async def job(w: Writer) -> None:
            for doc in docs:
                await w.put(doc)
            for kind, name in stale:
                if (kind, name) not in keep:
                    await w.remove(kind, name)

        self._call(what, job)

    def _call(self, what: str, job: Callable[[Writer], Awaitable[Any]]) -> None:
        for delay in (*RETRIES, None):
            try:
                self.ds.call(job)
                return
            except ValueError as exc:  # the mapping produced something Calico refuses: a bug to see, not retry
                log.error("calico: %s: refused by the datastore: %s", what, exc)
                return
            except Exception as exc:
                if delay is None:
                    log.error("calico: %s: datastore write failed, left to the next resync: %s", what, exc)
                    self._resync_needed.set()
                    return
                time.sleep(delay)

    # --- the leader's background work ---------------------------------------------------------------

    def _process_started(self, resource: str, event: str, trigger: Any, payload: Any = None) -> None:
        self.start_background()

    def start_background(self) -> None:
        if self._worker is None:
            self._resync_needed.set()  # the startup resync
            self._worker = threading.Thread(target=self._background, name="calico-leader", daemon=True)
            self._worker.start()

    def close(self) -> None:
        """Stop the leader's work, stop hearing Neutron's callbacks, close the datastore connection."""
        self.stop_background()
        for cb, res, ev in self._subscriptions:
            with contextlib.suppress(Exception):
                registry.unsubscribe(cb, res, ev)
        self.ds.close()

    def stop_background(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(30)
        self._unfollow_status()
        with contextlib.suppress(Exception):  # the lease runs out on its own
            self.ds.call(lambda w: self.election.resign(w.store.kv), timeout=5)

    def _background(self) -> None:
        """Campaign every third of the lease; as leader resync when asked or due, and pass Felix's status on
        as soon as the watch sees it change."""
        next_full = 0.0
        next_campaign = 0.0
        period = max(1.0, self.conf.election_ttl / 3)
        while not self._stop.is_set():
            if time.monotonic() >= next_campaign:
                next_campaign = time.monotonic() + period
                try:
                    self._leader = self.ds.call(lambda w: self.election.campaign(w.store.kv), timeout=10)
                except Exception as exc:
                    log.warning("calico: election: %s", exc)
                    self._leader = False
            if self._leader:
                if self._resync_needed.is_set() or (self.conf.resync_interval and time.time() >= next_full):
                    self._resync_needed.clear()
                    try:
                        stats = self.resync()
                        log.info("calico: resync: %s", stats)
                    except Exception as exc:
                        log.error("calico: resync failed, retrying: %s", exc)
                        self._resync_needed.set()
                    next_full = time.time() + (self.conf.resync_interval or 1e12)
                self._follow_status()
                self._report_status()
            else:
                self._unfollow_status()
            self._wake.wait(max(0.0, next_campaign - time.monotonic()))
            self._wake.clear()

    def _follow_status(self) -> None:
        """The status watch runs while this process leads; a failed one (connection lost) starts again."""
        if self._status_watch is not None and self._status_watch.done():
            with contextlib.suppress(BaseException):
                log.warning("calico: Felix status watch ended: %s", self._status_watch.exception())
            self._status_watch = None
        if self._status_watch is None:
            fold, wake = self._status, self._wake
            self._status_watch = self.ds.submit(lambda w: status.follow(w.store.kv, fold, wake))

    def _unfollow_status(self) -> None:
        if self._status_watch is not None:
            self._status_watch.cancel()
            self._status_watch = None

    def resync(self, scope: resync.Scope | None = None) -> Stats:
        """Compare Neutron's database with the datastore and make the datastore match (in `scope`)."""
        scope = scope or resync.Scope()
        view = read_neutron(_admin())
        docs, problems = resync.desired(view, scope)
        for problem in problems:
            log.error("calico: resync: %s", problem)
        if scope.everything:
            docs.append(ports.no_port_security_profile())
        owned = resync.owned_by(scope, view)
        extra = [felix_settings(self.conf)] if scope.everything else []

        records = resync.subnet_records(view, self.conf.openstack_region, scope)

        async def job(w: Writer) -> Stats:
            stats = await w.converge(docs, owned=owned)
            if scope.everything:
                await w.converge_raw(dhcp_subnet_prefix(self.conf.openstack_region), records, stats)
            else:
                for key, data in records.items():
                    await w.put_raw(key, data, stats)
            for doc in extra:
                await w.store.apply(felix_merge(await _felix_default(w), doc))
            return stats

        stats: Stats = self.ds.call(job, timeout=300)
        return stats

    def _report_status(self) -> None:
        """Tell Neutron what changed in Felix's endpoint status; heartbeat the agents of live Felixes. Without a
        running watch (not leader yet, or it failed), read the status keys once."""
        if self._status_watch is None or self._status_watch.done():
            try:
                kvs, _ = self.ds.call(lambda w: w.store.kv.list(self._status.prefix), timeout=10)
            except Exception as exc:
                log.warning("calico: reading Felix status: %s", exc)
                return
            self._status.reset(kvs)
        plugin = directory.get_plugin()
        ctx = _admin()
        for (host, port_id), state in self._status.untold().items():
            if state in STATUS_MAP:
                try:
                    plugin.update_port_status(ctx, port_id, STATUS_MAP[state], host)
                except Exception as exc:  # the port may be gone already
                    log.info("calico: status of port %s: %s", port_id, exc)
            self._status.told((host, port_id), state)
        if time.monotonic() >= self._next_heartbeat:  # as often as Neutron's own agents report
            self._next_heartbeat = time.monotonic() + AGENT_REPORT_INTERVAL
            for host in self._status.hosts():
                _agent_heartbeat(plugin, ctx, host)


def _endpoint_key(port: Mapping[str, Any]) -> tuple[str, str]:
    return "WorkloadEndpoint", names.endpoint_name(ports.host_of(port) or "", port.get("device_id") or port["id"],
                                                   port["id"])


def _floating_ips(ctx: Any, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    l3 = directory.get_plugin(plugin_constants.L3)
    return l3.get_floatingips(ctx, filters=filters) if l3 is not None else []


def read_neutron(ctx: Any) -> resync.NeutronView:
    """Everything a resync compares, read from Neutron's database through its plugins."""
    plugin = directory.get_plugin()
    return resync.NeutronView(
        ports=plugin.get_ports(ctx), security_groups=plugin.get_security_groups(ctx),
        subnets=plugin.get_subnets(ctx), networks=plugin.get_networks(ctx), floating_ips=_floating_ips(ctx),
        address_groups=plugin.get_address_groups(ctx),
    )


def felix_settings(conf: Any) -> dict[str, Any]:
    """What Felix needs for OpenStack: tap interfaces, the metadata DNAT, and endpoint status reports (the
    leader turns them into the ports' status)."""
    spec: dict[str, Any] = {"interfacePrefix": names.IFACE_PREFIX, "metadataAddr": conf.metadata_addr,
                            "metadataPort": conf.metadata_port, "endpointReportingEnabled": True}
    return {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": "default"},
            "spec": spec}


async def _felix_default(w: Writer) -> Any:
    from calico.datastore.store import NotFound

    try:
        return await w.store.get("FelixConfiguration", "default")
    except NotFound:
        return None


def felix_merge(current: Any, doc: dict[str, Any]) -> Any:
    """The default FelixConfiguration with OpenStack's settings added (other prefixes and fields kept)."""
    from calico.resources import parse_resource

    spec = dict(current.to_dict().get("spec", {})) if current is not None else {}
    prefixes = [p for p in (spec.get("interfacePrefix") or "cali").split(",") if p]  # Felix's default: cali
    if names.IFACE_PREFIX not in prefixes:
        prefixes.append(names.IFACE_PREFIX)
    spec.update(doc["spec"], interfacePrefix=",".join(prefixes))
    merged = {**doc, "spec": spec}
    if current is not None:
        merged["metadata"] = {**doc["metadata"], "resourceVersion": current.metadata.resourceVersion}
    return parse_resource(merged)


def _agent_heartbeat(plugin: Any, ctx: Any, host: str) -> None:
    state = {"agent_type": AGENT_TYPE, "binary": AGENT_BINARY, "host": host, "topic": "N/A",
             "configurations": {}}
    try:
        plugin.create_or_update_agent(ctx, state)
    except Exception as exc:
        log.info("calico: agent record for %s: %s", host, exc)


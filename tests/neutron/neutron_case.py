"""Neutron's ML2 unit-test framework with the `calico` driver loaded through its entry point.

Requests go through Neutron's API router; what the driver wrote is read back from the datastore through a
separate connection (the real store: an embedded file or etcd).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from neutron.tests.unit.plugins.ml2 import test_plugin
from oslo_config import cfg

from calico.datastore.config import DatastoreConfig, open_kv
from calico.datastore.keys import FELIX_STATUS_PREFIX
from calico.datastore.store import NotFound, ResourceStore
from calico.openstack import names, options

REGION = "no-region"


def felix_status_key(host: str) -> str:
    return f"{FELIX_STATUS_PREFIX}{REGION}/host/{host}/status"


class CalicoDriverCase(test_plugin.Ml2PluginV2TestCase):
    __test__ = False
    _mechanism_drivers = ["calico"]
    ds_env: dict[str, str] = {}  # the [calico] options naming the datastore, set by a fixture per test

    def setUp(self) -> None:
        options.register()
        assert self.ds_env, "a subclass must name its datastore (never the machine's default one)"
        for opt, value in self.ds_env.items():
            cfg.CONF.set_override(opt, value, group="calico")
        cfg.CONF.set_override("resync_interval", 0, group="calico")
        cfg.CONF.set_override("extension_drivers", ["port_security"], group="ml2")
        super().setUp()
        self.mech = self.driver.mechanism_manager.mech_drivers["calico"].obj
        self.addCleanup(self.mech.ds.close)
        self.live_hosts("h1", "h2")

    # --- the datastore, seen from outside the driver ----------------------------------------------

    def ds_config(self) -> DatastoreConfig:
        return self.mech.ds.cfg

    def kv_run(self, fn: Any) -> Any:
        async def go() -> Any:
            kv = await open_kv(self.ds_config())
            try:
                return await fn(kv)
            finally:
                await kv.close()

        return asyncio.run(go())

    def live_hosts(self, *hosts: str) -> None:
        async def put(kv: Any) -> None:
            for host in hosts:
                await kv.put(felix_status_key(host), json.dumps({"time": "now", "uptime": 1}).encode())

        self.kv_run(put)

    def stored(self, kind: str) -> dict[str, Any]:
        ns = None if kind in ("Profile", "FelixConfiguration") else names.NAMESPACE
        return {r.metadata.name: r.to_dict() for r in self.kv_run(lambda kv: ResourceStore(kv).list(kind, ns))}

    def rules(self, sg_id: str, direction: str) -> list[dict[str, Any]]:
        """A group's policy rules as stored, without the empty `source`/`destination` the model adds."""
        policy = self.stored_one("NetworkPolicy", names.sg_policy_name(sg_id))
        assert policy is not None, f"no policy for security group {sg_id}"
        return [{k: v for k, v in r.items() if v != {}} for r in policy["spec"].get(direction) or ()]

    def stored_one(self, kind: str, name: str) -> dict[str, Any] | None:
        async def get(kv: Any) -> Any:
            try:
                return (await ResourceStore(kv).get(kind, name, names.NAMESPACE)).to_dict()
            except NotFound:
                return None

        return self.kv_run(get)

    # --- Neutron, through its API -------------------------------------------------------------------

    def call(self, method: str, collection: str, body: dict[str, Any] | None = None, id: str | None = None,
             status: int | None = None) -> dict[str, Any]:
        if method == "POST":
            req = self.new_create_request(collection, body, as_admin=True)
        elif method == "PUT":
            req = self.new_update_request(collection, body, id, as_admin=True)
        elif method == "DELETE":
            req = self.new_delete_request(collection, id, as_admin=True)
        else:
            req = self.new_show_request(collection, id, as_admin=True)
        res = req.get_response(self.api)
        expected = status or {"POST": 201, "DELETE": 204}.get(method, 200)
        self.assertEqual(expected, res.status_int, res.body)
        return self.deserialize(self.fmt, res) if res.body else {}

    def make_net(self, **extra: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        net = self.call("POST", "networks", {"network": {"name": "net1", **extra}})["network"]
        sub4 = self.call("POST", "subnets", {"subnet": {
            "network_id": net["id"], "cidr": "198.18.10.0/24", "ip_version": 4, "gateway_ip": "198.18.10.1"}})
        sub6 = self.call("POST", "subnets", {"subnet": {
            "network_id": net["id"], "cidr": "fd00:10::/64", "ip_version": 6, "gateway_ip": "fd00:10::1"}})
        return net, sub4["subnet"], sub6["subnet"]

    def make_vm_port(self, net: dict[str, Any], host: str = "h1", **extra: Any) -> dict[str, Any]:
        body = {"network_id": net["id"], "device_owner": "compute:nova", "device_id": "vm-1",
                "binding:host_id": host, **extra}
        return self.call("POST", "ports", {"port": body})["port"]

    def make_group(self, name: str, rules: list[dict[str, Any]] = ()) -> dict[str, Any]:
        sg = self.call("POST", "security-groups", {"security_group": {"name": name}})["security_group"]
        for rule in sg["security_group_rules"]:  # Neutron's default egress rules: start from nothing
            self.call("DELETE", "security-group-rules", id=rule["id"])
        for rule in rules:
            self.add_rule(sg["id"], **rule)
        return sg

    def add_rule(self, sg_id: str, **rule: Any) -> dict[str, Any]:
        body = {"security_group_id": sg_id, "direction": "ingress", "ethertype": "IPv4", **rule}
        return self.call("POST", "security-group-rules", {"security_group_rule": body})["security_group_rule"]

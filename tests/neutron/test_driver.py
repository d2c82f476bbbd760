"""The `calico` mechanism driver inside Neutron's ML2 test framework, against the embedded store and etcd."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from calico.openstack import names
from tests.neutron.neutron_case import CalicoDriverCase


class DriverTests(CalicoDriverCase):
    __test__ = False  # run through the datastore-specific subclasses below
    def endpoint_of(self, port: dict[str, Any], host: str = "h1") -> dict[str, Any] | None:
        return self.stored_one("WorkloadEndpoint", names.endpoint_name(host, port["device_id"], port["id"]))

    def test_driver_is_loaded_through_its_entry_point(self) -> None:
        self.assertEqual("CalicoMechanismDriver", type(self.mech).__name__)

    def test_vm_port_is_bound_as_tap_and_becomes_an_endpoint(self) -> None:
        net, _, _ = self.make_net()
        port = self.make_vm_port(net)
        self.assertEqual("tap", port["binding:vif_type"])
        wep = self.endpoint_of(port)
        self.assertIsNotNone(wep)
        spec = wep["spec"]
        self.assertEqual(("openstack", "h1", "vm-1", port["id"]),
                         (spec["orchestrator"], spec["node"], spec["workload"], spec["endpoint"]))
        self.assertEqual("tap" + port["id"][:11], spec["interfaceName"])
        self.assertEqual(sorted(f"{f['ip_address']}/{32 if ':' not in f['ip_address'] else 128}"
                                for f in port["fixed_ips"]), sorted(spec["ipNetworks"]))
        self.assertEqual(2, len(spec["ipNetworks"]))
        self.assertEqual(port["mac_address"], spec["mac"])
        self.assertEqual(("198.18.10.1", "fd00:10::1"), (spec["ipv4Gateway"], spec["ipv6Gateway"]))
        labels = wep["metadata"]["labels"]
        self.assertEqual(net["id"], labels[names.NETWORK_ID_LABEL])
        self.assertEqual(port["project_id"], labels[names.PROJECT_ID_LABEL])
        self.assertIn(names.sg_label(port["security_groups"][0]), labels)  # the project's default group

    def test_host_without_live_felix_gets_no_binding(self) -> None:
        net, _, _ = self.make_net()
        port = self.make_vm_port(net, host="h9")
        self.assertEqual("binding_failed", port["binding:vif_type"])
        self.assertEqual({}, self.stored("WorkloadEndpoint"))

    def test_non_normal_vnic_is_not_bound(self) -> None:
        net, _, _ = self.make_net()
        port = self.make_vm_port(net, **{"binding:vnic_type": "direct"})
        self.assertEqual("binding_failed", port["binding:vif_type"])

    def test_vlan_network_is_refused(self) -> None:
        net = self.call("POST", "networks", {"network": {
            "name": "v", "provider:network_type": "vlan", "provider:physical_network": "physnet1",
            "provider:segmentation_id": 7}})["network"]
        self.call("POST", "subnets", {"subnet": {"network_id": net["id"], "cidr": "198.18.11.0/24", "ip_version": 4}})
        port = self.make_vm_port(net)
        self.assertEqual("binding_failed", port["binding:vif_type"])
        self.assertEqual({}, self.stored("WorkloadEndpoint"))

    def test_port_updates_follow_groups_admin_state_and_port_security(self) -> None:
        net, _, _ = self.make_net()
        sg = self.make_group("web")
        port = self.make_vm_port(net)
        self.call("PUT", "ports", {"port": {"security_groups": [sg["id"]]}}, id=port["id"])
        labels = self.endpoint_of(port)["metadata"]["labels"]
        self.assertEqual([names.sg_label(sg["id"])], [k for k in labels if k.startswith(names.SG_LABEL_PREFIX)])
        self.call("PUT", "ports", {"port": {"admin_state_up": False}}, id=port["id"])
        wep = self.endpoint_of(port)
        self.assertFalse([k for k in wep["metadata"]["labels"] if k.startswith(names.SG_LABEL_PREFIX)])
        self.assertEqual([], wep["spec"].get("profiles", []))
        self.call("PUT", "ports", {"port": {"admin_state_up": True, "security_groups": [],
                                            "port_security_enabled": False}}, id=port["id"])
        wep = self.endpoint_of(port)
        self.assertEqual([names.NO_PORT_SECURITY_PROFILE], wep["spec"]["profiles"])
        self.assertEqual(["0.0.0.0/0", "::/0"], wep["spec"]["allowSpoofedSourcePrefixes"])

    def test_allowed_address_pairs_make_a_network_set_in_the_groups(self) -> None:
        net, _, _ = self.make_net()
        sg = self.make_group("db")
        port = self.make_vm_port(net, security_groups=[sg["id"]],
                                 allowed_address_pairs=[{"ip_address": "198.18.99.0/24"}])
        self.assertEqual(["198.18.99.0/24"], self.endpoint_of(port)["spec"]["allowSpoofedSourcePrefixes"])
        netset = self.stored_one("NetworkSet", names.aap_set_name(port["id"]))
        self.assertEqual(["198.18.99.0/24"], netset["spec"]["nets"])
        self.assertEqual({names.sg_label(sg["id"]): ""}, netset["metadata"]["labels"])
        self.call("PUT", "ports", {"port": {"allowed_address_pairs": []}}, id=port["id"])
        self.assertIsNone(self.stored_one("NetworkSet", names.aap_set_name(port["id"])))

    def test_migration_moves_the_endpoint_and_delete_removes_it(self) -> None:
        net, _, _ = self.make_net()
        port = self.make_vm_port(net)
        self.assertIsNotNone(self.endpoint_of(port, "h1"))
        self.call("PUT", "ports", {"port": {"binding:host_id": "h2"}}, id=port["id"])
        self.assertIsNone(self.endpoint_of(port, "h1"))
        self.assertEqual("h2", self.endpoint_of(port, "h2")["spec"]["node"])
        self.call("DELETE", "ports", id=port["id"])
        self.assertEqual({}, self.stored("WorkloadEndpoint"))

    def test_security_group_lifecycle_and_rules(self) -> None:
        other = self.make_group("other")
        sg = self.make_group("web", [
            {"protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "198.18.0.0/16"},
            {"protocol": "icmp", "ethertype": "IPv6", "port_range_min": 128, "port_range_max": 0},
            {"remote_group_id": other["id"], "protocol": "udp", "port_range_min": 1000, "port_range_max": 2000},
        ])
        policy = self.stored_one("NetworkPolicy", names.sg_policy_name(sg["id"]))
        self.assertEqual(f"has({names.sg_label(sg['id'])})", policy["spec"]["selector"])
        self.assertEqual([], self.rules(sg["id"], "egress"))
        ingress = sorted(self.rules(sg["id"], "ingress"), key=lambda r: str(r.get("protocol")))
        self.assertEqual([
            {"action": "Allow", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128, "code": 0}},
            {"action": "Allow", "ipVersion": 4, "protocol": "TCP", "source": {"nets": ["198.18.0.0/16"]},
             "destination": {"ports": [80]}},
            {"action": "Allow", "ipVersion": 4, "protocol": "UDP", "source": {"selector": names.sg_selector(other["id"])},
             "destination": {"ports": ["1000:2000"]}},
        ], ingress)
        egress_rule = self.add_rule(sg["id"], direction="egress", ethertype="IPv6")
        self.assertEqual([{"action": "Allow", "ipVersion": 6}], self.rules(sg["id"], "egress"))
        self.call("DELETE", "security-group-rules", id=egress_rule["id"])
        self.assertEqual([], self.rules(sg["id"], "egress"))
        self.call("DELETE", "security-groups", id=sg["id"])
        self.assertIsNone(self.stored_one("NetworkPolicy", names.sg_policy_name(sg["id"])))

    def test_default_group_allows_egress_and_ingress_from_its_members(self) -> None:
        # A migrated database holds Neutron's templates for the default group; the test schema has none.
        for rule in ({"direction": "egress", "ethertype": "IPv4"}, {"direction": "egress", "ethertype": "IPv6"},
                     {"direction": "ingress", "ethertype": "IPv4", "remote_group_id": "PARENT"},
                     {"direction": "ingress", "ethertype": "IPv6", "remote_group_id": "PARENT"}):
            self.call("POST", "default-security-group-rules", {"default_security_group_rule": {
                **rule, "used_in_default_sg": True, "used_in_non_default_sg": False}})
        net, _, _ = self.make_net()
        port = self.make_vm_port(net)
        default = port["security_groups"][0]
        self.assertEqual([{"action": "Allow", "ipVersion": 4}, {"action": "Allow", "ipVersion": 6}],
                         sorted(self.rules(default, "egress"), key=lambda r: r["ipVersion"]))
        self.assertEqual([names.sg_selector(default)] * 2,
                         [r["source"]["selector"] for r in self.rules(default, "ingress")])

    def test_resync_creates_missing_deletes_extra_and_fixes_what_differs(self) -> None:
        net, _, _ = self.make_net()
        sg = self.make_group("web", [{"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}])
        port = self.make_vm_port(net, security_groups=[sg["id"]])
        wep_name = names.endpoint_name("h1", "vm-1", port["id"])

        async def tamper(kv: Any) -> None:
            from calico.datastore.store import ResourceStore
            from calico.resources import parse_resource

            store = ResourceStore(kv)
            await store.delete("WorkloadEndpoint", wep_name, names.NAMESPACE)
            policy = await store.get("NetworkPolicy", names.sg_policy_name(sg["id"]), names.NAMESPACE)
            data = policy.to_dict()
            data["spec"]["ingress"] = [{"action": "Allow"}]  # wider than Neutron says
            await store.update(parse_resource(data))
            await store.create(parse_resource({
                "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": names.endpoint_name("h2", "gone", "dead-port"), "namespace": names.NAMESPACE},
                "spec": {"orchestrator": "openstack", "node": "h2", "workload": "gone", "endpoint": "dead-port",
                         "interfaceName": "tapdead", "ipNetworks": ["198.18.10.99/32"]}}))

        self.kv_run(tamper)
        stats = self.mech.resync()
        # created: the endpoint and (first resync) the port-security-off profile; updated: the policy
        self.assertEqual((2, 1, 1), (stats.created, stats.updated, stats.deleted), str(stats))
        self.assertEqual({wep_name}, set(self.stored("WorkloadEndpoint")))
        self.assertEqual([{"action": "Allow", "ipVersion": 4, "protocol": "TCP", "destination": {"ports": [22]}}],
                         self.rules(sg["id"], "ingress"))
        again = self.mech.resync()
        self.assertEqual((0, 0, 0), (again.created, again.updated, again.deleted), str(again))
        self.assertIn(names.NO_PORT_SECURITY_PROFILE, self.stored("Profile"))
        felix = self.stored("FelixConfiguration")["default"]["spec"]
        self.assertEqual(("cali,tap", "127.0.0.1", 8775, True),
                         (felix["interfacePrefix"], felix["metadataAddr"], felix["metadataPort"],
                          felix["endpointReportingEnabled"]))

    def test_scoped_resync_touches_only_its_port(self) -> None:
        from calico.openstack.resync import Scope

        net, _, _ = self.make_net()
        a = self.make_vm_port(net, device_id="vm-a")
        b = self.make_vm_port(net, device_id="vm-b")

        async def drop_both(kv: Any) -> None:
            from calico.datastore.store import ResourceStore

            for p in (a, b):
                await ResourceStore(kv).delete("WorkloadEndpoint", names.endpoint_name("h1", p["device_id"], p["id"]),
                                               names.NAMESPACE)

        self.kv_run(drop_both)
        stats = self.mech.resync(Scope(port=a["id"]))
        self.assertEqual(1, stats.created)
        self.assertIsNotNone(self.endpoint_of(a))
        self.assertIsNone(self.endpoint_of(b))

    def test_felix_status_reaches_port_status_and_agent_records(self) -> None:
        net, _, _ = self.make_net()
        port = self.make_vm_port(net)
        key = (f"/calico/felix/v2/no-region/host/h1/workload/openstack/vm-1/endpoint/{port['id']}")

        async def report(kv: Any) -> None:
            await kv.put(key, b'{"status": "up"}')

        self.kv_run(report)
        self.mech._report_status()
        self.assertEqual("ACTIVE", self.call("GET", "ports", id=port["id"])["port"]["status"])
        agents = self.plugin.get_agents(self.context, filters={"host": ["h1"]})
        self.assertEqual(["Calico per-host agent (felix)"], [a["agent_type"] for a in agents])
        self.assertTrue(agents[0]["alive"])

    def test_felix_status_is_watched_while_leading(self) -> None:
        net, _, _ = self.make_net()
        port = self.make_vm_port(net)
        key = (f"/calico/felix/v2/no-region/host/h1/workload/openstack/vm-1/endpoint/{port['id']}")
        self.mech._follow_status()
        try:
            for state, expected in (("down", "DOWN"), ("up", "ACTIVE")):
                self.kv_run(lambda kv, state=state: kv.put(key, json.dumps({"status": state}).encode()))
                deadline = time.monotonic() + 10
                while (port["id"] not in {p for _, p in self.mech._status.untold()}
                       and time.monotonic() < deadline):
                    time.sleep(0.05)  # the watch folds on the datastore thread
                self.assertFalse(self.mech._status_watch.done())  # a watch, not the one-off list
                self.mech._report_status()
                self.assertEqual(expected, self.call("GET", "ports", id=port["id"])["port"]["status"])
                self.assertEqual({}, self.mech._status.untold())  # told once
        finally:
            self.mech._unfollow_status()


    def test_two_neutron_servers_elect_one_leader_and_a_dead_one_is_replaced(self) -> None:
        from oslo_config import cfg

        from calico.openstack.driver import CalicoMechanismDriver

        cfg.CONF.set_override("election_ttl", 3, group="calico")
        first = self.mech
        first.election.ttl = 3
        second = CalicoMechanismDriver()  # a second Neutron server process's driver, same datastore
        second.initialize()
        self.addCleanup(second.close)
        self.addCleanup(first.stop_background)
        first.start_background()
        second.start_background()

        def leaders() -> list[CalicoMechanismDriver]:
            return [d for d in (first, second) if d._leader]

        deadline = time.monotonic() + 10
        while len(leaders()) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        [leader] = leaders()
        follower = second if leader is first else first
        time.sleep(1.5)  # several campaigns later, still one leader
        self.assertEqual([leader], leaders())
        # The leader's process dies: its loop stops, nobody resigns, its lease runs out.
        leader._stop.set()
        leader._wake.set()
        assert leader._worker is not None
        leader._worker.join(10)
        leader._unfollow_status()
        died = time.monotonic()
        while not follower._leader and time.monotonic() - died < 10:
            time.sleep(0.05)
        took = time.monotonic() - died
        self.assertTrue(follower._leader, "the follower never took over")
        self.assertLess(took, 3 + 1 + 0.5)  # within a lease period (+ one campaign period, + slack)
        deadline = time.monotonic() + 5
        while follower._status_watch is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIsNotNone(follower._status_watch)  # the new leader follows Felix's status


class TestDriverEmbedded(DriverTests):
    __test__ = True

    @pytest.fixture(autouse=True)
    def _embedded(self, tmp_path: Any) -> None:
        self.ds_env = {"datastore_type": "embedded", "embedded_path": str(tmp_path / "calico.db")}


class TestDriverEtcd(DriverTests):
    __test__ = True

    @pytest.fixture(autouse=True)
    def _etcd(self, etcd_server: Any) -> None:
        etcd_server.etcdctl("del", "", "--prefix")
        self.ds_env = {"datastore_type": "etcdv3", "etcd_endpoints": etcd_server.endpoint}


class MoreDriverTests(CalicoDriverCase):
    """Floating IPs and address groups, through the L3 and core plugins' Python API."""

    __test__ = False

    def test_floating_ip_becomes_the_endpoints_ip_nat(self) -> None:
        from neutron_lib.plugins import constants as plugin_constants
        from neutron_lib.plugins import directory

        l3 = directory.get_plugin(plugin_constants.L3)
        ext = self.call("POST", "networks", {"network": {"name": "ext", "router:external": True}})["network"]
        self.call("POST", "subnets", {"subnet": {"network_id": ext["id"], "cidr": "198.19.200.0/24",
                                                 "ip_version": 4}})
        net, sub4, _ = self.make_net()
        router = l3.create_router(self.context, {"router": {
            "name": "r", "admin_state_up": True, "tenant_id": self._project_id,
            "external_gateway_info": {"network_id": ext["id"]}}})
        l3.add_router_interface(self.context, router["id"], {"subnet_id": sub4["id"]})
        port = self.make_vm_port(net)
        fip = l3.create_floatingip(self.context, {"floatingip": {
            "floating_network_id": ext["id"], "port_id": port["id"], "tenant_id": self._project_id}})
        wep = self.stored_one("WorkloadEndpoint", names.endpoint_name("h1", "vm-1", port["id"]))
        self.assertEqual([{"internalIP": fip["fixed_ip_address"], "externalIP": fip["floating_ip_address"]}],
                         wep["spec"]["ipNATs"])
        l3.update_floatingip(self.context, fip["id"], {"floatingip": {"port_id": None}})
        wep = self.stored_one("WorkloadEndpoint", names.endpoint_name("h1", "vm-1", port["id"]))
        self.assertNotIn("ipNATs", wep["spec"])

    def test_remote_address_group_follows_its_addresses(self) -> None:
        plugin = self.plugin
        ag = plugin.create_address_group(self.context, {"address_group": {
            "name": "ag", "description": "", "project_id": self._project_id, "addresses": ["198.18.44.0/24"]}})
        sg = self.make_group("ag-users", [{"remote_address_group_id": ag["id"], "protocol": "tcp",
                                           "port_range_min": 443, "port_range_max": 443}])
        self.assertEqual([{"nets": ["198.18.44.0/24"]}], [r["source"] for r in self.rules(sg["id"], "ingress")])
        plugin.add_addresses(self.context, ag["id"], {"addresses": ["198.18.45.0/24"]})
        self.assertEqual([{"nets": ["198.18.44.0/24", "198.18.45.0/24"]}],
                         [r["source"] for r in self.rules(sg["id"], "ingress")])
        plugin.remove_addresses(self.context, ag["id"], {"addresses": ["198.18.44.0/24", "198.18.45.0/24"]})
        self.assertEqual([], self.rules(sg["id"], "ingress"))  # an empty group matches nothing, never "any"


class TestMoreEmbedded(MoreDriverTests):
    __test__ = True

    @pytest.fixture(autouse=True)
    def _embedded(self, tmp_path: Any) -> None:
        self.ds_env = {"datastore_type": "embedded", "embedded_path": str(tmp_path / "calico.db")}


class TestDatastoreFaults(CalicoDriverCase):
    """The datastore down during a port create: Neutron's request still succeeds, the resync repairs."""

    __test__ = True

    @pytest.fixture(autouse=True)
    def _etcd(self, etcd_factory: Any) -> None:
        self.etcd = etcd_factory()
        self.ds_env = {"datastore_type": "etcdv3", "etcd_endpoints": self.etcd.endpoint}

    def test_port_created_while_etcd_is_down_appears_after_resync(self) -> None:
        from oslo_config import cfg

        net, _, _ = self.make_net()
        cfg.CONF.set_override("require_felix_alive", False, group="calico")  # its report is in etcd too
        self.etcd.stop()
        try:
            port = self.make_vm_port(net)
        finally:
            self.etcd.start()
        self.assertEqual("tap", port["binding:vif_type"])
        self.assertTrue(self.mech._resync_needed.is_set())
        self.assertIsNone(self.stored_one("WorkloadEndpoint", names.endpoint_name("h1", "vm-1", port["id"])))
        stats = self.mech.resync()
        self.assertGreaterEqual(stats.created, 1)
        self.assertIsNotNone(self.stored_one("WorkloadEndpoint", names.endpoint_name("h1", "vm-1", port["id"])))

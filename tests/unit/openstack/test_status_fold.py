"""The leader's fold of Felix's status keys (pure): hosts, endpoint status, what Neutron has not been told."""

from __future__ import annotations

from calico.datastore.kv import EventType, KeyValue, WatchEvent
from calico.openstack.status import StatusFold

PREFIX = "/calico/felix/v2/no-region/host/"


def ep(host: str, port: str, orch: str = "openstack") -> str:
    return f"{PREFIX}{host}/workload/{orch}/vm-1/endpoint/{port}"


def put(key: str, value: bytes) -> WatchEvent:
    return WatchEvent(EventType.PUT, key, value, 1)


def test_list_then_events_track_hosts_and_untold_endpoints() -> None:
    fold = StatusFold(PREFIX)
    fold.reset([KeyValue(f"{PREFIX}h1/status", b"{}", 1, 1), KeyValue(ep("h1", "p1"), b'{"status": "up"}', 1, 1),
                KeyValue(ep("h1", "k8s", orch="k8s"), b'{"status": "up"}', 1, 1),  # not ours
                KeyValue(ep("h1", "bad"), b"not json", 1, 1)])
    assert fold.hosts() == {"h1"}
    assert fold.untold() == {("h1", "p1"): "up"}
    fold.told(("h1", "p1"), "up")
    assert fold.untold() == {}
    fold.apply([put(ep("h1", "p1"), b'{"status": "up"}')])  # the same again: nothing new
    assert fold.untold() == {}
    fold.apply([put(ep("h1", "p1"), b'{"status": "down"}'), put(f"{PREFIX}h2/status", b"{}"),
                put(ep("h2", "p2"), b'{"status": "error"}')])
    assert fold.untold() == {("h1", "p1"): "down", ("h2", "p2"): "error"}
    assert fold.hosts() == {"h1", "h2"}
    fold.apply([WatchEvent(EventType.DELETE, f"{PREFIX}h1/status", None, 2),
                WatchEvent(EventType.DELETE, ep("h2", "p2"), None, 2)])
    assert fold.hosts() == {"h2"}  # h1's Felix lease expired
    assert fold.untold() == {("h1", "p1"): "down"}


def test_a_value_that_is_not_a_status_keeps_the_last_one() -> None:
    fold = StatusFold(PREFIX)
    fold.apply([put(ep("h1", "p1"), b'{"status": "up"}'), put(ep("h1", "p1"), b'{"status": 7}'),
                put(ep("h1", "p1"), b"[]")])
    assert fold.untold() == {("h1", "p1"): "up"}

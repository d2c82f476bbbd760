"""Flow logs without a kernel: packet keys, the netlink messages (built and parsed), aggregation into records
(traces, verdicts, conntrack counts across intervals, bounds), the JSON records and filters, endpoint names,
the rotated file and the socket, the logging twins both renderers add, and `calicoctl flows`."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from calico.calculation import events as ev
from calico.calicoctl.flows import flows
from calico.dataplane import ruleids as rid
from calico.dataplane.config import DataplaneConfig, FlowLogRules
from calico.dataplane.iptables import flowlog as ipt_flowlog
from calico.dataplane.iptables import model as ipt_model
from calico.dataplane.iptables.table import render_family
from calico.dataplane.nftables import flowlog as nft_flowlog
from calico.dataplane.nftables.table import render_model
from calico.dataplane.state import DesiredState
from calico.flowlogs import nfnetlink as nl
from calico.flowlogs.aggregator import FlowAggregator
from calico.flowlogs.endpoints import EndpointIndex
from calico.flowlogs.outputs import JsonLinesFile, SocketServer, read_lines
from calico.flowlogs.packets import FlowKey, parse_packet
from calico.flowlogs.records import NET, Endpoint, FlowRecord, TraceStep, from_json

PID = ev.PolicyID("default", "web", "ns1")
OUT = rid.policy_rule(ev.PolicyID("default", "out", "ns1"), False, 0, rid.Action.ALLOW)
WEB_ALLOW = rid.policy_rule(PID, True, 0, rid.Action.ALLOW)
WEB_DENY = rid.policy_rule(PID, True, 1, rid.Action.DENY)
TIER = rid.tier_default("default", True, rid.Stage.WORKLOAD)


def udp4(src: str, dst: str, sport: int, dport: int, payload: int = 10) -> bytes:
    length = 28 + payload
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, length, 1, 0, 64, 17, 0, ipaddress.IPv4Address(src).packed,
                     ipaddress.IPv4Address(dst).packed)
    return ip + struct.pack(">HHHH", sport, dport, 8 + payload, 0) + b"x" * payload


def tcp6_fragmented_after_hop_by_hop(src: str, dst: str) -> bytes:
    hdr = struct.pack(">IHBB16s16s", 6 << 28, 8 + 8 + 20, 0, 64, ipaddress.IPv6Address(src).packed,
                      ipaddress.IPv6Address(dst).packed)
    hop = bytes([44, 0]) + b"\0" * 6  # next: fragment
    frag = bytes([6, 0]) + struct.pack(">H", 0) + b"\0" * 4  # offset 0: carries the ports
    return hdr + hop + frag + struct.pack(">HH", 1234, 443) + b"\0" * 16


# --- packets and netlink --------------------------------------------------------------------------------------


def test_packet_keys() -> None:
    key, length = parse_packet(socket.AF_INET, udp4("198.18.1.2", "198.18.1.3", 4000, 8080, 50)[:40]) or (None, 0)
    assert key == FlowKey(17, "198.18.1.2", "198.18.1.3", 4000, 8080) and length == 78  # from the header
    key6, _ = parse_packet(socket.AF_INET6, tcp6_fragmented_after_hop_by_hop("fd00:1::2", "fd00:1::3")) or (None, 0)
    assert key6 == FlowKey(6, "fd00:1::2", "fd00:1::3", 1234, 443)
    later = bytearray(udp4("198.18.1.2", "198.18.1.3", 4000, 8080))
    later[6:8] = struct.pack(">H", 10)  # a later fragment: no ports
    assert parse_packet(socket.AF_INET, bytes(later)) == (FlowKey(17, "198.18.1.2", "198.18.1.3", 0, 0), 38)
    assert parse_packet(socket.AF_INET, b"\x45" + b"\0" * 5) is None
    assert parse_packet(socket.AF_INET6, udp4("198.18.1.2", "198.18.1.3", 1, 2)) is None  # wrong version


def test_nflog_messages_build_and_parse() -> None:
    bind = list(nl.messages(nl.bind_messages(5)))
    assert [k for k, *_ in bind] == [(4 << 8) | 1] * 4
    assert all(struct.unpack_from(">H", p, 2)[0] == 5 for *_, p in bind)  # res_id: the group
    payload = struct.pack("=BBH", socket.AF_INET, 0, 0) + nl.attr(nl.NFULA_PREFIX, WEB_DENY.text.encode() + b"\0") \
        + nl.attr(nl.NFULA_PAYLOAD, udp4("198.18.1.2", "198.18.1.3", 4000, 9090, 50))
    msg = struct.pack("=IHHII", 16 + len(payload), 4 << 8, 0, 0, 0) + payload
    [(_, _, _, body)] = list(nl.messages(msg))
    assert nl.parse_logged(body) == nl.LoggedPacket(WEB_DENY.text, FlowKey(17, "198.18.1.2", "198.18.1.3", 4000,
                                                                            9090), 78)
    assert nl.parse_logged(struct.pack("=BBH", 2, 0, 0)) is None  # no payload


def test_conntrack_entry_parse() -> None:
    def tup(src: str, dst: str, sp: int, dp: int) -> bytes:
        ip = nl.attr(1, ipaddress.IPv4Address(src).packed) + nl.attr(2, ipaddress.IPv4Address(dst).packed)
        proto = nl.attr(1, bytes([6])) + nl.attr(2, struct.pack(">H", sp)) + nl.attr(3, struct.pack(">H", dp))
        return nl.attr(nl.CTA_TUPLE_IP | 0x8000, ip) + nl.attr(nl.CTA_TUPLE_PROTO | 0x8000, proto)

    counters = nl.attr(1, struct.pack(">Q", 5)) + nl.attr(2, struct.pack(">Q", 500))
    payload = (struct.pack("=BBH", 2, 0, 0) + nl.attr(nl.CTA_TUPLE_ORIG | 0x8000, tup("198.18.1.2", "198.18.9.9", 1, 80))
               + nl.attr(nl.CTA_TUPLE_REPLY | 0x8000, tup("198.18.1.3", "198.18.1.2", 80, 1))
               + nl.attr(nl.CTA_COUNTERS_ORIG | 0x8000, counters))
    assert nl.parse_conntrack(payload) == (FlowKey(6, "198.18.1.2", "198.18.9.9", 1, 80),
                                           FlowKey(6, "198.18.1.3", "198.18.1.2", 80, 1), nl.CtCounts(5, 500, 0, 0))
    assert nl.dump_request()[4:6] == struct.pack("=H", (1 << 8) | 1)


# --- aggregation ----------------------------------------------------------------------------------------------

A = Endpoint("wep", "ns1", "a", {"app": "a"})
B = Endpoint("wep", "ns1", "b", {"app": "b"})


def lookup(ip: str) -> Endpoint:
    return {"198.18.1.2": A, "198.18.1.3": B}.get(ip, NET)


def test_aggregation_traces_verdicts_and_logged_counts() -> None:
    agg = FlowAggregator(start=100)
    allowed = FlowKey(17, "198.18.1.2", "198.18.1.3", 4000, 8080)
    denied = FlowKey(17, "198.18.1.2", "198.18.1.3", 4001, 9090)
    agg.add(101, OUT, allowed, 78)
    agg.add(101, WEB_ALLOW, allowed, 78)
    for _ in range(3):  # a denied flow: every packet meets policy (and logs at both stages)
        agg.add(102, OUT, denied, 60)
        agg.add(102, WEB_DENY, denied, 60)
    records = {r.dest_port: r for r in agg.flush(105, "h1", lookup)}
    assert records[9090].action == "deny" and (records[9090].packets, records[9090].bytes) == (3, 180)
    assert records[9090].policies == (TraceStep("egress", "policy", "default", "ns1/out", 0, "allow"),
                                      TraceStep("ingress", "policy", "default", "ns1/web", 1, "deny"))
    a = records[8080]
    assert (a.action, a.packets, a.counts_from, a.start_time, a.end_time) == ("allow", 1, "log", 100, 105)
    assert (a.source, a.dest, a.host, a.proto) == (A, B, "h1", "udp")
    assert agg.flush(110, "h1", lookup) == []  # nothing new; the allowed flow was never in conntrack


def test_conntrack_counts_allowed_flows_across_intervals_and_dnat() -> None:
    agg = FlowAggregator(start=0)
    key = FlowKey(6, "198.18.1.2", "198.18.1.3", 4000, 80)
    agg.add(1, OUT, key, 60)
    agg.add(1, WEB_ALLOW, key, 60)
    # Conntrack saw the flow before a DNAT (to the floating IP 198.19.0.3): matched through its reply tuple.
    reply = FlowKey(6, "198.18.1.3", "198.18.1.2", 80, 4000)
    orig = FlowKey(6, "198.18.1.2", "198.19.0.3", 4000, 80)
    agg.conntrack([(orig, reply, nl.CtCounts(10, 1000, 8, 4000))])
    [r] = agg.flush(10, "h1", lookup)
    assert (r.packets, r.bytes, r.reply_packets, r.reply_bytes, r.counts_from) == (10, 1000, 8, 4000, "conntrack")
    # The next interval: no new logged packet, conntrack counted more: only the difference, same trace.
    agg.conntrack([(orig, reply, nl.CtCounts(15, 1500, 9, 4500))])
    [r2] = agg.flush(20, "h1", lookup)
    assert (r2.packets, r2.bytes, r2.reply_packets, r2.start_time) == (5, 500, 1, 10)
    assert [s.policy for s in r2.policies] == ["ns1/out", "ns1/web"]
    agg.conntrack([])  # the connection ended: nothing more to say, and forgotten
    assert agg.flush(30, "h1", lookup) == [] and not agg.active


def test_bounded_flows() -> None:
    agg = FlowAggregator(max_flows=2)
    assert all(agg.add(0, TIER, FlowKey(17, "198.18.1.2", "198.18.1.3", p, 1), 60) for p in (1, 2))
    assert agg.add(0, TIER, FlowKey(17, "198.18.1.2", "198.18.1.3", 1, 1), 60)  # a known flow still counts
    assert not agg.add(0, TIER, FlowKey(17, "198.18.1.2", "198.18.1.3", 3, 1), 60) and agg.dropped == 1
    assert len(agg.flush(1, "h", lookup)) == 2


# --- records, endpoints, outputs --------------------------------------------------------------------------------


def record(**kw: object) -> FlowRecord:
    base: dict[str, object] = dict(start_time=1, end_time=2, host="h1", proto="udp", source_ip="198.18.1.2",
                                   source_port=4000, source=A, dest_ip="198.18.1.3", dest_port=8080, dest=B,
                                   action="deny", policies=(TraceStep.of(OUT), TraceStep.of(TIER)), packets=2,
                                   bytes=120)
    base.update(kw)
    return FlowRecord(**base)  # type: ignore[arg-type]


def test_records_round_trip_and_filters() -> None:
    r = record()
    assert from_json(r.to_json()) == r
    doc = json.loads(r.to_json())
    assert doc["policies"][1] == {"direction": "ingress", "kind": "tier_default", "tier": "default", "policy": "",
                                  "rule": None, "action": "deny"}
    assert r.matches(action="deny", namespace="ns1", endpoint="b", policy="out")
    assert r.matches(endpoint="ns1/a", policy="ns1/out") and r.matches(policy="default/ns1/out")
    assert not r.matches(action="allow") and not r.matches(namespace="other") and not r.matches(policy="web")
    with pytest.raises(ValueError, match="field 'packets'"):
        from_json(json.dumps({**doc, "packets": "2"}))
    with pytest.raises(ValueError, match=r"policies\[0\].rule"):
        from_json(json.dumps({**doc, "policies": [{**doc["policies"][0], "rule": "0"}]}))


def test_endpoint_index_from_datastore_values() -> None:
    idx = EndpointIndex()
    key = "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/h1-k8s-a-eth0"
    wep = {"metadata": {"name": "h1-k8s-a-eth0", "namespace": "ns1", "labels": {"app": "a"}},
           "spec": {"pod": "a", "ipNetworks": ["198.18.1.2/32", "fd00:1::2/128"]}}
    idx.update(key, json.dumps(wep).encode())
    assert idx.lookup("198.18.1.2") == Endpoint("wep", "ns1", "a", {"app": "a", "projectcalico.org/namespace": "ns1"})
    assert idx.lookup("fd00:1::2").name == "a"
    hep = "/calico/resources/v3/projectcalico.org/hostendpoints/h1-eth0"
    idx.update(hep, json.dumps({"metadata": {"name": "h1-eth0"}, "spec": {"expectedIPs": ["198.18.0.1"]}}).encode())
    assert idx.lookup("198.18.0.1") == Endpoint("hep", "", "h1-eth0", {})
    idx.update(key, b"not json")  # logged; its addresses are forgotten, nothing else
    assert idx.lookup("198.18.1.2") == NET and idx.lookup("198.18.0.1").type == "hep"
    idx.update(hep, None)
    assert idx.lookup("198.18.0.1") == NET


def test_file_rotation_keeps_max_files_and_reads_oldest_first(tmp_path: Path) -> None:
    f = JsonLinesFile(str(tmp_path), max_bytes=100, max_files=3)
    for i in range(10):
        f.write([json.dumps({"n": i, "pad": "x" * 40})])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["flows.log", "flows.log.1", "flows.log.2"]
    kept = [json.loads(line)["n"] for line in read_lines(str(tmp_path))]
    assert kept == [7, 8, 9]  # one 58-byte line per 100-byte file, three files


async def test_socket_streams_and_a_slow_client_loses_lines_not_memory(tmp_path: Path) -> None:
    server = SocketServer(str(tmp_path / "flows.sock"), max_buffer=4096)
    await server.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "flows.sock"))
        await asyncio.sleep(0.05)
        server.publish(["one", "two"])
        assert await reader.readline() == b"one\n" and await reader.readline() == b"two\n"
        _, slow_w = await asyncio.open_unix_connection(str(tmp_path / "flows.sock"))
        await asyncio.sleep(0.05)
        for _ in range(2000):  # nobody reads: the buffer limit holds and the rest is counted
            server.publish(["x" * 200])
        assert server.dropped > 0
        writer.close()
        slow_w.close()
    finally:
        await server.close()
    assert not (tmp_path / "flows.sock").exists()


# --- the logging twins, both renderers ----------------------------------------------------------------------------


def state(rules: FlowLogRules | None) -> DesiredState:
    s = DesiredState(DataplaneConfig(flow_logs=rules))
    tier = ev.TierInfo("default", "Deny", ingress_policies=(PID,))
    s.apply_all([ev.PolicyUpdate(PID, (ev.RenderedRule("Allow", "r", protocol="TCP"),), ()),
                 ev.WorkloadEndpointUpdate(ev.WorkloadEndpointID("ns1", "a"), "cali0000000000a", None,
                                           ("198.18.1.2/32",), (), (tier,), ()), ev.InSync()])
    return s


def test_nft_twins_log_before_each_verdict_through_one_limit() -> None:
    assert nft_flowlog.LIMIT not in render_model(state(None)).limits
    model = render_model(state(FlowLogRules(group=3, rate=50, burst=5, sample_percent=20)))
    assert model.limits == {"flowlogs": "rate 50/second burst 5 packets"}
    rules = model.chains["pi-default/ns1/web"].rules
    assert rules[0] == f'meta l4proto tcp numgen random mod 100 < 20 limit name "flowlogs" log prefix ' \
                       f'"{WEB_ALLOW.text}" group 3'
    assert rules[1].startswith(f'meta l4proto tcp counter name "{WEB_ALLOW.text}"')
    dispatch = model.chains["from-wl-dispatch"].rules
    assert dispatch[1] == 'numgen random mod 100 < 20 limit name "flowlogs" log prefix "UED/w" group 3'
    assert dispatch[2] == 'counter name "UED/w" drop'
    failsafe = " ".join(model.chains["failsafe-in"].rules)
    assert "log prefix" not in failsafe  # failsafes are not flow-logged


def test_iptables_twins_log_before_each_verdict_through_one_hashlimit() -> None:
    chains = render_family(state(FlowLogRules(group=3, rate=50, burst=5, sample_percent=100)), 4)
    rules = chains["cali-pi-default/ns1/web"].rules
    assert rules[0] == ipt_model.Rule(
        f"-p tcp -m hashlimit --hashlimit-upto 50/sec --hashlimit-burst 5 --hashlimit-name {ipt_flowlog.LIMIT_NAME}",
        f"-j NFLOG --nflog-group 3 --nflog-prefix {WEB_ALLOW.text} --nflog-size 128")
    assert rules[1].counter == WEB_ALLOW.text
    assert all("NFLOG" not in r.target for r in chains["cali-failsafe-in"].rules)
    assert "NFLOG" not in " ".join(r.target for r in render_family(state(None), 4)["cali-pi-default/ns1/web"].rules)


def test_flow_log_rules_are_validated() -> None:
    with pytest.raises(ValueError, match=r"flow_logs\.sample_percent"):
        DataplaneConfig(flow_logs=FlowLogRules(sample_percent=0))


# --- calicoctl flows -------------------------------------------------------------------------------------------


def test_calicoctl_flows_table_json_and_filters(tmp_path: Path) -> None:
    JsonLinesFile(str(tmp_path)).write([
        record().to_json(),
        record(action="allow", dest_port=8080, policies=(TraceStep.of(OUT), TraceStep.of(WEB_ALLOW)), packets=5,
               bytes=500, counts_from="conntrack").to_json(),
        "garbage",
    ])
    runner = CliRunner()
    out = runner.invoke(flows, ["--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "ingress default/ns1/web rule 0 (allow)" in out.output and "ingress default default (deny)" in out.output
    assert "not a flow record" in out.output  # stderr is mixed in by CliRunner
    denied = runner.invoke(flows, ["--dir", str(tmp_path), "--action", "deny", "-o", "json"])
    [line] = [ln for ln in denied.output.splitlines() if ln.startswith("{")]
    assert from_json(line).action == "deny"
    assert "No flows found" in runner.invoke(flows, ["--dir", str(tmp_path), "--policy", "nope"]).output
    assert runner.invoke(flows, ["--dir", str(tmp_path / "missing")]).exit_code == 1


# --- the collector's shell, over a stand-in NFLOG socket ---------------------------------------------------------


class StandInNflog:
    """`NflogSocket`'s interface over a socketpair (a real descriptor for the event loop) and a list of packets."""

    def __init__(self, packets: list[nl.LoggedPacket]) -> None:
        self.a, self.b = socket.socketpair()
        self.packets = packets
        self.overflows = 0
        self.unparsed = 0

    def fileno(self) -> int:
        return self.a.fileno()

    def read_batch(self, limit: int) -> list[nl.LoggedPacket]:
        out, self.packets = self.packets[:limit], self.packets[limit:]
        return out

    def close(self) -> None:
        self.a.close()
        self.b.close()


async def test_collector_budget_pauses_reading_and_flush_writes_records(tmp_path: Path) -> None:
    from calico.flowlogs.collector import FlowLogCollector, FlowLogSettings

    key = FlowKey(17, "198.18.1.2", "198.18.1.3", 4000, 9090)
    packets = [nl.LoggedPacket("not an identity", key, 78)]
    packets += [nl.LoggedPacket(WEB_DENY.text, key._replace(sport=4000 + i), 78) for i in range(10)]
    settings = FlowLogSettings(file_directory=str(tmp_path), max_events_per_second=6, conntrack_interval=60)
    now = [1000.0]
    collector = FlowLogCollector(settings, "h1", lookup, monotonic=lambda: now[0])
    stand_in = StandInNflog(packets)
    collector.nflog = stand_in  # type: ignore[assignment]
    collector._on_readable()
    assert collector.stats.events == 5 and collector.stats.unreadable == 1  # the budget: 6 this second
    collector._on_readable()  # still this second: reading pauses instead
    assert collector.stats.read_pauses == 1 and len(stand_in.packets) == 5
    now[0] += 1.0  # the next second: reading resumes (its timer runs on real time: the rest of a second)
    await asyncio.sleep(1.05)
    collector._on_readable()
    assert collector.stats.events == 10 and not stand_in.packets
    collector.poll_conntrack = lambda: asyncio.sleep(0)  # type: ignore[method-assign,assignment]
    assert await collector.flush() == 10
    lines = list(read_lines(str(tmp_path)))
    assert len(lines) == 10 and all(from_json(ln).action == "deny" for ln in lines)
    asyncio.get_running_loop().remove_reader(stand_in.fileno())
    stand_in.close()

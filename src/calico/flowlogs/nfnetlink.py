"""The kernel's packet log (nfnetlink_log, "NFLOG") and conntrack table over netlink: the one home of both.

pyroute2 (0.9) has no nfnetlink_log, so this is a small reader of our own. In: a network namespace (None: the
process's own), an NFLOG group. Out:
  - `NflogSocket`: bound to the group (copy mode: the first COPY_RANGE bytes of each packet), non-blocking;
    `read_batch()` gives up to n `LoggedPacket`s (the rule prefix, the packet's key and length) without ever
    blocking, and counts what the kernel dropped because we were too slow (ENOBUFS);
  - `dump_conntrack(netns)`: every conntrack entry's original-direction key with its packet and byte counters
    (blocking: run it in a worker thread; counters need net.netfilter.nf_conntrack_acct=1).
The message building and parsing functions are pure; the sockets are created inside the namespace by a
short-lived thread that enters it (`calico.dataplane.netns`), so the rest of the process never moves.

Wire format (linux/netlink.h, linux/netfilter/nfnetlink*.h): nlmsghdr (len, type, flags, seq, pid), then
nfgenmsg (family, version, res_id big-endian), then attributes (len, type; padded to 4 bytes).
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from typing import NamedTuple

from calico.dataplane.netns import in_netns
from calico.flowlogs.packets import FlowKey, parse_packet

NETLINK_NETFILTER = 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x2, 0x4, 0x300
NLA_TYPE_MASK = 0x3FFF

NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_ULOG = 1, 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_NLBUFSIZ, NFULA_CFG_TIMEOUT = 1, 2, 3, 4
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PACKET_HDR, NFULA_PAYLOAD, NFULA_PREFIX = 1, 9, 10
IPCTNL_MSG_CT_GET = 1
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY = 1, 2, 9, 10
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2

COPY_RANGE = 128  # bytes of each logged packet: its IP and transport headers
RCVBUF = 4 << 20
_HDR = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")


class NetlinkError(OSError):
    pass


class LoggedPacket(NamedTuple):
    prefix: str  # the logging rule's prefix: a rule identity (`calico.dataplane.ruleids`)
    key: FlowKey
    length: int  # the whole packet's length (IP header's), not just the copied part


class CtCounts(NamedTuple):
    packets: int
    bytes: int
    reply_packets: int
    reply_bytes: int


# --- framing (pure) ------------------------------------------------------------------------------------------


def attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def message(kind: int, flags: int, seq: int, family: int, res_id: int, attrs: bytes = b"") -> bytes:
    body = _NFGEN.pack(family, 0, socket.htons(res_id)) + attrs
    return _HDR.pack(_HDR.size + len(body), kind, flags, seq, 0) + body


def messages(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in one datagram."""
    at = 0
    while at + _HDR.size <= len(buf):
        length, kind, flags, seq, _ = _HDR.unpack_from(buf, at)
        if length < _HDR.size or at + length > len(buf):
            return
        yield kind, flags, seq, buf[at + _HDR.size:at + length]
        at += (length + 3) & ~3


def attrs(buf: bytes, at: int = 0) -> dict[int, bytes]:
    """Attributes by type (the first of each; flags masked off)."""
    out: dict[int, bytes] = {}
    while at + 4 <= len(buf):
        length, kind = struct.unpack_from("=HH", buf, at)
        if length < 4:
            break
        out.setdefault(kind & NLA_TYPE_MASK, buf[at + 4:at + length])
        at += (length + 3) & ~3
    return out


def error_code(payload: bytes) -> int:
    """An NLMSG_ERROR's errno (0: an acknowledgement)."""
    return -struct.unpack_from("=i", payload)[0] if len(payload) >= 4 else errno.EIO


# --- NFLOG (pure) --------------------------------------------------------------------------------------------


def bind_messages(group: int, seq: int = 1) -> bytes:
    """Bind this socket to `group`, copy the first COPY_RANGE bytes of every packet, and let the kernel batch
    messages for at most 0.1 s (its default: 1 s or 100 packets) in 16 kB; each one acknowledged."""
    config = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    flags = NLM_F_REQUEST | NLM_F_ACK
    return (
        message(config, flags, seq, socket.AF_UNSPEC, group, attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])))
        + message(config, flags, seq + 1, socket.AF_UNSPEC, group,
                  attr(NFULA_CFG_MODE, struct.pack(">IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)))
        + message(config, flags, seq + 2, socket.AF_UNSPEC, group, attr(NFULA_CFG_NLBUFSIZ, struct.pack(">I", 16384)))
        + message(config, flags, seq + 3, socket.AF_UNSPEC, group, attr(NFULA_CFG_TIMEOUT, struct.pack(">I", 10)))
    )


def parse_logged(payload: bytes) -> LoggedPacket | None:
    """One NFULNL_MSG_PACKET's payload (nfgenmsg + attributes); None when it is not a packet we can key."""
    if len(payload) < _NFGEN.size:
        return None
    family = payload[0]
    a = attrs(payload, _NFGEN.size)
    data = a.get(NFULA_PAYLOAD)
    if data is None:
        return None
    parsed = parse_packet(family, data)
    if parsed is None:
        return None
    prefix = a.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode("ascii", "replace")
    return LoggedPacket(prefix, parsed[0], parsed[1])


# --- conntrack (pure) ----------------------------------------------------------------------------------------


def dump_request(seq: int = 1) -> bytes:
    """Every entry of every family (nfgen family AF_UNSPEC)."""
    return message((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq,
                   socket.AF_UNSPEC, 0)


def _tuple_key(tup: bytes) -> FlowKey | None:
    t = attrs(tup)
    ip, proto = attrs(t.get(CTA_TUPLE_IP, b"")), attrs(t.get(CTA_TUPLE_PROTO, b""))
    if 1 in ip and 2 in ip:
        src, dst = socket.inet_ntop(socket.AF_INET, ip[1]), socket.inet_ntop(socket.AF_INET, ip[2])
    elif 3 in ip and 4 in ip:
        src, dst = socket.inet_ntop(socket.AF_INET6, ip[3]), socket.inet_ntop(socket.AF_INET6, ip[4])
    else:
        return None
    num = proto.get(CTA_PROTO_NUM, b"\0")[0]

    def port(kind: int) -> int:
        return int.from_bytes(proto[kind], "big") if kind in proto else 0

    return FlowKey(num, src, dst, port(CTA_PROTO_SRC_PORT), port(CTA_PROTO_DST_PORT))


def _counters(buf: bytes | None) -> tuple[int, int]:
    c = attrs(buf or b"")
    return (int.from_bytes(c.get(CTA_COUNTERS_PACKETS, b""), "big"),
            int.from_bytes(c.get(CTA_COUNTERS_BYTES, b""), "big"))


def parse_conntrack(payload: bytes) -> tuple[FlowKey, FlowKey, CtCounts] | None:
    """One dumped entry: (original key, reply key, counters)."""
    a = attrs(payload, _NFGEN.size)
    orig, reply = _tuple_key(a.get(CTA_TUPLE_ORIG, b"")), _tuple_key(a.get(CTA_TUPLE_REPLY, b""))
    if orig is None or reply is None:
        return None
    return orig, reply, CtCounts(*_counters(a.get(CTA_COUNTERS_ORIG)), *_counters(a.get(CTA_COUNTERS_REPLY)))


# --- sockets (I/O) -------------------------------------------------------------------------------------------


def _open(netns: str | None, blocking: bool) -> socket.socket:
    def make() -> socket.socket:
        flags = socket.SOCK_RAW | socket.SOCK_CLOEXEC | (0 if blocking else socket.SOCK_NONBLOCK)
        sock = socket.socket(socket.AF_NETLINK, flags, NETLINK_NETFILTER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, 0))
        return sock

    return in_netns(netns, make)


def _expect_acks(sock: socket.socket, count: int) -> None:
    seen = 0
    while seen < count:
        for kind, _, _, payload in messages(sock.recv(65536)):
            if kind == NLMSG_ERROR:
                code = error_code(payload)
                if code:
                    raise NetlinkError(code, f"nfnetlink configuration refused: {errno.errorcode.get(code, code)}")
                seen += 1


class NflogSocket:
    """One NFLOG group's packets, read without blocking (register `fileno()` with the event loop)."""

    def __init__(self, group: int, netns: str | None = None) -> None:
        self.group = group
        self.sock = _open(netns, blocking=True)
        try:
            self.sock.settimeout(5.0)
            self.sock.send(bind_messages(group))
            _expect_acks(self.sock, 4)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.overflows = 0  # times the kernel dropped messages we had no room for (ENOBUFS)
        self.unparsed = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_batch(self, limit: int) -> list[LoggedPacket]:
        """Up to `limit` packets (fewer when nothing more is queued); never blocks."""
        out: list[LoggedPacket] = []
        packet = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
        while len(out) < limit:
            try:
                buf = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.overflows += 1
                    continue
                raise
            for kind, _, _, payload in messages(buf):
                if kind == packet:
                    logged = parse_logged(payload)
                    if logged is None:
                        self.unparsed += 1
                    else:
                        out.append(logged)
        return out

    def close(self) -> None:
        self.sock.close()


def dump_conntrack(netns: str | None = None, timeout: float = 10.0) -> list[tuple[FlowKey, FlowKey, CtCounts]]:
    """Every conntrack entry (blocking: call it from a worker thread)."""
    sock = _open(netns, blocking=True)
    try:
        sock.settimeout(timeout)
        sock.send(dump_request())
        out: list[tuple[FlowKey, FlowKey, CtCounts]] = []
        while True:
            for kind, _, _, payload in messages(sock.recv(1 << 20)):
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = error_code(payload)
                    if code:
                        raise NetlinkError(code, f"conntrack dump failed: {errno.errorcode.get(code, code)}")
                    continue
                entry = parse_conntrack(payload)
                if entry is not None:
                    out.append(entry)
    finally:
        sock.close()

"""`KVStore` over etcd v3, speaking gRPC directly with the stubs generated in `aetcd.rpc`.

In: one or more client URLs (`http://host:port` or `https://host:port`), optional TLS files (CA, client
cert + key), optional username/password. Out: an `EtcdKV` whose operations map 1:1 onto etcd KV, Txn,
Lease, Watch and Compaction RPCs, with etcd/gRPC failures turned into the `calico.datastore.kv` errors:

* UNAVAILABLE / DEADLINE_EXCEEDED / closed channel -> `DatastoreUnavailable` (a write that timed out may
  or may not have been applied, as with any etcd client);
* "required revision has been compacted" -> `ResyncNeeded`;
* authentication / permission failures -> `EtcdAuthError` (a `KVError`).

Why not `aetcd.Client`: it only builds insecure single-host channels; we need TLS, several endpoints and
our own keepalive settings, and the raw stubs are small enough to use directly.

Several endpoints: their hosts are resolved once at connect time into one gRPC target
(`ipv4:a:p,b:p`) with the `pick_first` policy, so gRPC connects to the first member that answers and
moves on when it dies. With TLS the certificate is checked against the first endpoint's host name.

Dead-server detection for watches: a watch stream that has been silent for `watch_probe_interval`
seconds gets a WatchProgressRequest; if the server does not answer within another interval the watch
raises `ResyncNeeded`. So a hung or partitioned server is noticed within ~2 intervals (4 s by default);
a killed one is noticed at once (the TCP connection resets). gRPC keepalive pings (10 s, within etcd's
default 5 s minimum) additionally tear down dead connections for unary calls.

Lease TTLs are whole seconds in etcd: `grant_lease(ttl)` rounds up, and etcd raises TTLs below its
minimum (1.5 x election timeout, 2 s with default settings) to that minimum.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import grpc
from aetcd import rpc

from calico.datastore.kv import (
    Compare,
    DatastoreUnavailable,
    Delete,
    EventType,
    KeyExists,
    KeyNotFound,
    KeyValue,
    KVError,
    KVStore,
    Put,
    ResyncNeeded,
    RevisionMismatch,
    TxnOp,
    TxnResult,
    WatchEvent,
)

T = TypeVar("T")

WATCH_PROBE_INTERVAL = 2.0  # seconds of watch-stream silence before we ask the server for a progress reply
LIST_PAGE_SIZE = 2000  # keys per Range call in list(); bounds message sizes for big prefixes
_MAX_MESSAGE = 64 * 1024 * 1024

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.lb_policy_name", "pick_first"),
    # etcd's default --grpc-keepalive-min-time is 5 s; pinging more often gets us GOAWAY'd.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after an etcd restart instead of gRPC's default backoff of up to 120 s.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
]

_EQUAL = rpc.Compare.CompareResult.Value("EQUAL")
_GREATER = rpc.Compare.CompareResult.Value("GREATER")
_CREATE = rpc.Compare.CompareTarget.Value("CREATE")
_MOD = rpc.Compare.CompareTarget.Value("MOD")
_EV_DELETE = rpc.Event.EventType.Value("DELETE")


class EtcdAuthError(KVError):
    """Authentication or authorization failed: wrong user/password, missing permission, auth off."""


def _b(key: str) -> bytes:
    # surrogateescape round-trips keys written by other tools that are not valid UTF-8
    return key.encode("utf-8", "surrogateescape")


def _s(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """etcd (key, range_end) covering every key that starts with `prefix` ("" = whole keyspace)."""
    start = _b(prefix)
    if not start:
        return b"\0", b"\0"  # etcd: key "\0" with range_end "\0" means "all keys"
    end = bytearray(start)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return start, bytes(end)
        end.pop()
    return start, b"\0"  # prefix of only 0xff bytes: everything >= prefix


def _kv(kv: Any) -> KeyValue:
    return KeyValue(_s(kv.key), bytes(kv.value), kv.create_revision, kv.mod_revision, kv.lease)


def _target(endpoints: Sequence[str]) -> tuple[str, bool, str]:
    """(gRPC target, use TLS, host name for certificate checks) for the endpoint URLs."""
    if not endpoints:
        raise ValueError("at least one etcd endpoint is required")
    parsed = []
    for ep in endpoints:
        u = urlsplit(ep if "://" in ep else f"http://{ep}")
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"bad etcd endpoint {ep!r}: expected http(s)://host:port")
        parsed.append((u.scheme, u.hostname, u.port or 2379))
    schemes = {p[0] for p in parsed}
    if len(schemes) != 1:
        raise ValueError("etcd endpoints mix http and https")
    tls = schemes == {"https"}
    first_host = parsed[0][1]
    if len(parsed) == 1:
        host, port = parsed[0][1], parsed[0][2]
        return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), tls, first_host
    addrs: list[tuple[int, str, int]] = []  # (family version, ip, port)
    for _, host, port in parsed:
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            ips = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
        for ip in dict.fromkeys(ips):
            addrs.append((ip.version, str(ip), port))
    versions = {a[0] for a in addrs}
    if len(versions) != 1:
        raise ValueError("etcd endpoints resolve to both IPv4 and IPv6; list one family")
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{p}" for _, ip, p in addrs), tls, first_host
    return "ipv6:" + ",".join(f"[{ip}]:{p}" for _, ip, p in addrs), tls, first_host


class EtcdKV(KVStore):
    """etcd v3 backend; build it with `await EtcdKV.connect(...)`."""

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout: float, username: str | None, password: str | None
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._username = username
        self._password = password or ""
        self._token: str | None = None
        self._auth_lock = asyncio.Lock()
        self._closed = False
        self._kv = rpc.KVStub(channel)
        self._watch = rpc.WatchStub(channel)
        self._lease = rpc.LeaseStub(channel)
        self._maint = rpc.MaintenanceStub(channel)
        self._auth = rpc.AuthStub(channel)
        self.watch_probe_interval = WATCH_PROBE_INTERVAL

    @classmethod
    async def connect(
        cls,
        endpoints: Sequence[str],
        *,
        ca_cert: str | None = None,
        cert: str | None = None,
        key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
    ) -> EtcdKV:
        """Open a channel, wait (up to `timeout`) until a member answers, and authenticate if asked.

        Raises `DatastoreUnavailable` (no member reachable / TLS handshake refused, with the last gRPC
        error in the message) or `EtcdAuthError` (bad credentials)."""
        target, tls, host = await asyncio.to_thread(_target, endpoints)
        options = list(_CHANNEL_OPTIONS)
        if tls:

            def read(path: str | None) -> bytes | None:
                return Path(path).read_bytes() if path else None

            if (cert is None) != (key is None):
                raise ValueError("client cert and key must be given together")
            creds = grpc.ssl_channel_credentials(read(ca_cert), read(key), read(cert))
            if len(endpoints) > 1:
                options.append(("grpc.ssl_target_name_override", host))
            channel = grpc.aio.secure_channel(target, creds, options=options)
        else:
            if ca_cert or cert or key:
                raise ValueError("TLS files given but the endpoints are http://")
            channel = grpc.aio.insecure_channel(target, options=options)
        self = cls(channel, timeout=timeout, username=username, password=password)
        try:
            await self._wait_reachable()
            if username:
                await self._authenticate()
        except BaseException:
            await channel.close()
            raise
        return self

    async def _wait_reachable(self) -> None:
        # Retry fast-failing UNAVAILABLE until the deadline so the caller gets the real reason
        # (refused, handshake failure) rather than a bare deadline error.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        last = "no attempt"
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DatastoreUnavailable(f"etcd unreachable after {self._timeout}s: {last}")
            try:
                await self._maint.Status(rpc.StatusRequest(), timeout=remaining)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise _map_error(e) from e
                if e.code() == grpc.StatusCode.UNAVAILABLE or last == "no attempt":
                    last = f"{e.code().name}: {e.details()}"
            await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))

    async def _authenticate(self) -> None:
        async with self._auth_lock:
            if self._token is not None:
                return
            try:
                resp = await self._auth.Authenticate(
                    rpc.AuthenticateRequest(name=self._username, password=self._password),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as e:
                err = _map_error(e)
                if isinstance(err, DatastoreUnavailable):
                    raise err from e
                raise EtcdAuthError(f"etcd authentication as {self._username!r} failed: {e.details()}") from e
            self._token = resp.token

    async def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        if self._closed:
            raise DatastoreUnavailable("etcd store is closed")
        if not self._username:
            return None
        if self._token is None:
            await self._authenticate()
        return (("token", self._token or ""),)

    async def _call(self, fn: Callable[[tuple[tuple[str, str], ...] | None], Awaitable[T]]) -> T:
        """Run one RPC with auth metadata; re-authenticate once if the token went stale (etcd restart,
        token TTL); translate gRPC errors."""
        for attempt in (0, 1):
            md = await self._metadata()
            try:
                return await fn(md)
            except grpc.aio.AioRpcError as e:
                if attempt == 0 and self._username and _token_stale(e):
                    self._token = None
                    continue
                if self._closed:
                    raise DatastoreUnavailable("etcd store is closed") from e
                raise _map_error(e) from e
        raise AssertionError("unreachable")

    async def _unary(self, method: Any, request: Any) -> Any:
        return await self._call(lambda md: method(request, timeout=self._timeout, metadata=md))

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        resp = await self._unary(self._kv.Range, rpc.RangeRequest(key=_b(key)))
        return _kv(resp.kvs[0]) if resp.kvs else None

    async def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        start, end = prefix_range(prefix)
        for _attempt in range(3):
            out: list[KeyValue] = []
            key, rev = start, 0
            try:
                while True:
                    # Later pages pin the first page's revision so the whole list is one snapshot.
                    req = rpc.RangeRequest(key=key, range_end=end, limit=LIST_PAGE_SIZE, revision=rev)
                    resp = await self._unary(self._kv.Range, req)
                    if rev == 0:
                        rev = resp.header.revision
                    out.extend(_kv(kv) for kv in resp.kvs)
                    if not resp.more or not resp.kvs:
                        return out, rev
                    key = resp.kvs[-1].key + b"\0"
            except ResyncNeeded:
                continue  # compacted between pages: take a fresh snapshot
        raise ResyncNeeded("list kept racing with compaction")

    async def revision(self) -> int:
        resp = await self._unary(self._kv.Range, rpc.RangeRequest(key=b"\0", count_only=True))
        return int(resp.header.revision)

    # --- writes --------------------------------------------------------------------------------

    async def _txn(self, compare: list[Any], success: list[Any], failure: list[Any]) -> Any:
        req = rpc.TxnRequest(compare=compare, success=success, failure=failure)
        return await self._unary(self._kv.Txn, req)

    async def create(self, key: str, value: bytes, lease: int = 0) -> int:
        k = _b(key)
        resp = await self._txn([_absent(k)], [_put_op(k, value, lease)], [])
        if not resp.succeeded:
            raise KeyExists(key)
        return int(resp.header.revision)

    async def update(self, key: str, value: bytes, mod_revision: int | None = None, lease: int = 0) -> int:
        k = _b(key)
        resp = await self._txn(_guard(k, mod_revision), [_put_op(k, value, lease)], [_get_op(k)])
        if not resp.succeeded:
            _raise_guard_failure(key, resp, mod_revision)
        return int(resp.header.revision)

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        resp = await self._unary(self._kv.Put, rpc.PutRequest(key=_b(key), value=value, lease=lease))
        return int(resp.header.revision)

    async def delete(self, key: str, mod_revision: int | None = None) -> int:
        k = _b(key)
        resp = await self._txn(_guard(k, mod_revision), [_del_op(k)], [_get_op(k)])
        if not resp.succeeded:
            _raise_guard_failure(key, resp, mod_revision)
        return int(resp.header.revision)

    async def delete_prefix(self, prefix: str) -> int:
        """Not part of `KVStore`: remove every key under `prefix` in one revision (tests, tooling)."""
        start, end = prefix_range(prefix)
        resp = await self._unary(self._kv.DeleteRange, rpc.DeleteRangeRequest(key=start, range_end=end))
        return int(resp.header.revision)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[TxnOp]) -> TxnResult:
        _check_unique(ops)
        cmp = [_mod_is(_b(c.key), c.mod_revision) for c in compares]
        success = [
            _put_op(_b(op.key), op.value, op.lease) if isinstance(op, Put) else _del_op(_b(op.key))
            for op in ops
        ]
        resp = await self._txn(cmp, success, [])
        return TxnResult(bool(resp.succeeded), int(resp.header.revision))

    # --- leases --------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        resp = await self._unary(self._lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=max(1, math.ceil(ttl))))
        if resp.error:
            raise KVError(f"etcd lease grant failed: {resp.error}")
        return int(resp.ID)

    async def refresh_lease(self, lease: int) -> None:
        async def once(md: tuple[tuple[str, str], ...] | None) -> Any:
            call = self._lease.LeaseKeepAlive(metadata=md, timeout=self._timeout)
            try:
                await call.write(rpc.LeaseKeepAliveRequest(ID=lease))
                return await call.read()
            finally:
                call.cancel()

        resp = await self._call(once)
        if resp is grpc.aio.EOF or resp.TTL <= 0:
            raise KeyNotFound(f"lease {lease:x} expired or unknown")

    async def revoke_lease(self, lease: int) -> None:
        with contextlib.suppress(KeyNotFound):  # already gone: revoking is idempotent
            await self._unary(self._lease.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lease))

    # --- watch ---------------------------------------------------------------------------------

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[WatchEvent]]:
        start, end = prefix_range(prefix)
        create = rpc.WatchCreateRequest(
            key=start, range_end=end, start_revision=max(1, start_revision), progress_notify=True
        )
        md = await self._metadata()
        call = self._watch.Watch(metadata=md)
        # A reader task feeds a queue so that the silence timeout below never cancels a gRPC read.
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)

        async def reader() -> None:
            try:
                while True:
                    msg = await call.read()
                    await queue.put(msg)
                    if msg is grpc.aio.EOF:
                        return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                await queue.put(e)

        task = asyncio.create_task(reader())
        try:
            await self._watch_write(call, rpc.WatchRequest(create_request=create))
            probing = False
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), self.watch_probe_interval)
                except TimeoutError:
                    if probing:
                        raise ResyncNeeded(
                            f"etcd watch got no reply to a progress probe in {self.watch_probe_interval}s"
                        ) from None
                    probing = True
                    await self._watch_write(call, rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))
                    continue
                probing = False
                if msg is grpc.aio.EOF:
                    raise ResyncNeeded("etcd closed the watch stream")
                if isinstance(msg, BaseException):
                    raise self._watch_failure(msg) from msg
                if msg.canceled or msg.compact_revision:
                    if msg.compact_revision:
                        raise ResyncNeeded(f"watch start revision compacted (at {msg.compact_revision})")
                    if "auth" in msg.cancel_reason:
                        self._token = None
                    raise ResyncNeeded(f"etcd cancelled the watch: {msg.cancel_reason or 'no reason'}")
                if msg.events:
                    yield [
                        WatchEvent(
                            EventType.DELETE if ev.type == _EV_DELETE else EventType.PUT,
                            _s(ev.kv.key),
                            None if ev.type == _EV_DELETE else bytes(ev.kv.value),
                            ev.kv.mod_revision,
                        )
                        for ev in msg.events
                    ]
        finally:
            task.cancel()
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch_write(self, call: Any, req: Any) -> None:
        try:
            # Bounded: a write blocks while HTTP/2 flow control is exhausted (e.g. a hung server).
            await asyncio.wait_for(call.write(req), self.watch_probe_interval)
        except TimeoutError:
            raise ResyncNeeded("etcd watch stream not accepting writes") from None
        except Exception as e:
            raise self._watch_failure(e) from e

    def _watch_failure(self, e: BaseException) -> KVError:
        if self._closed:
            return DatastoreUnavailable("etcd store is closed")
        if isinstance(e, grpc.aio.AioRpcError):
            if _token_stale(e):
                self._token = None  # the caller's re-watch will authenticate again
            if isinstance(_map_error(e), EtcdAuthError):
                return _map_error(e)
            return ResyncNeeded(f"etcd watch stream failed: {e.code().name}: {e.details()}")
        return ResyncNeeded(f"etcd watch stream failed: {e!r}")

    # --- maintenance ---------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        try:
            await self._unary(self._kv.Compact, rpc.CompactionRequest(revision=revision))
        except ResyncNeeded:
            return  # already compacted at or past `revision`

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._channel.close()


# --- request builders and error mapping ------------------------------------------------------------


def _absent(k: bytes) -> Any:
    return rpc.Compare(result=_EQUAL, target=_CREATE, key=k, create_revision=0)


def _mod_is(k: bytes, mod_revision: int) -> Any:
    # etcd has no "absent" mod revision; create_revision == 0 is how absence is compared.
    if mod_revision == 0:
        return _absent(k)
    return rpc.Compare(result=_EQUAL, target=_MOD, key=k, mod_revision=mod_revision)


def _guard(k: bytes, mod_revision: int | None) -> list[Any]:
    exists = rpc.Compare(result=_GREATER, target=_CREATE, key=k, create_revision=0)
    if mod_revision is None:
        return [exists]
    # Always require existence too, so mod_revision=0 can never turn an update into a create.
    return [exists, rpc.Compare(result=_EQUAL, target=_MOD, key=k, mod_revision=mod_revision)]


def _raise_guard_failure(key: str, resp: Any, mod_revision: int | None) -> None:
    kvs = resp.responses[0].response_range.kvs if resp.responses else []
    if not kvs:
        raise KeyNotFound(key)
    raise RevisionMismatch(f"{key}: expected mod revision {mod_revision}, found {kvs[0].mod_revision}")


def _put_op(k: bytes, value: bytes, lease: int) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value, lease=lease))


def _del_op(k: bytes) -> Any:
    return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=k))


def _get_op(k: bytes) -> Any:
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=k, keys_only=True))


def _check_unique(ops: Sequence[TxnOp]) -> None:
    # etcd rejects a txn touching one key twice; check up front so both backends behave alike.
    keys = [op.key for op in ops if isinstance(op, Put | Delete)]
    if len(keys) != len(set(keys)):
        raise ValueError("a txn may touch each key at most once")


def _token_stale(e: grpc.aio.AioRpcError) -> bool:
    details = e.details() or ""
    return e.code() == grpc.StatusCode.UNAUTHENTICATED or "auth store is old" in details


def _map_error(e: grpc.aio.AioRpcError) -> Exception:
    code, details = e.code(), e.details() or ""
    msg = f"etcd {code.name}: {details}"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return DatastoreUnavailable(msg)
    if "compacted" in details:
        return ResyncNeeded(msg)
    if "future revision" in details:
        return ValueError(msg)
    if code == grpc.StatusCode.NOT_FOUND:  # "requested lease not found"
        return KeyNotFound(msg)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED) or (
        "authentication" in details or "user name" in details
    ):
        return EtcdAuthError(msg)
    if "duplicate key" in details:
        return ValueError(msg)
    return KVError(msg)

"""libnftables in-process: the nft command language without a process spawn per transaction.

In: nft command text (what `nft -f -` reads) and the network namespace to program (None: the process's own;
a name: /run/netns/NAME). Out: the effect in that namespace, the command's output, or `LibNftError` with
nft's error text.

One context, kept open (its parser and cache setup are paid once), driven from one dedicated worker thread so
the event loop never blocks on the kernel (ctypes releases the GIL for the call). For a named namespace that
thread alone enters it with setns(2) before the context is made: a network namespace is per thread, so the
rest of the process, the root namespace included, is untouched, and every netlink socket libnftables opens
belongs to the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from calico.dataplane.netns import enter_netns, libc

_OUTPUT_JSON = 1 << 4
_LIB_NAME = "libnftables.so.1"
_TRIM_AFTER = 64 * 1024  # bytes of command text


def _malloc_trim() -> None:
    with contextlib.suppress(AttributeError):  # not glibc: nothing to do
        libc().malloc_trim(0)


class LibNftError(RuntimeError):
    pass


@functools.cache  # one dlopen and one set of signatures per process
def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_LIB_NAME, use_errno=True)
    lib.nft_ctx_new.restype = ctypes.c_void_p
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
    lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
    lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
    lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


class LibNft:
    """A persistent libnftables context bound to one namespace. `available()` is False without the library."""

    def __init__(self, netns: str | None = None) -> None:
        self._lib = _load()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="libnft")
        try:
            self._ctx = self._pool.submit(self._open, netns).result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        self._base_flags = self._lib.nft_ctx_output_get_flags(self._ctx)

    def _open(self, netns: str | None) -> ctypes.c_void_p:
        if netns is not None:
            try:
                enter_netns(netns)  # the worker thread stays there for its whole life
            except OSError as e:
                raise LibNftError(str(e)) from None
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise LibNftError("nft_ctx_new failed")
        handle = ctypes.c_void_p(ctx)
        self._lib.nft_ctx_buffer_output(handle)
        self._lib.nft_ctx_buffer_error(handle)
        return handle

    @staticmethod
    def available() -> bool:
        try:
            _load()
        except OSError:
            return False
        return True

    def _run_in_worker(self, text: str, json_output: bool, dry_run: bool) -> str:
        with self._lock:
            if self._ctx is None:
                raise LibNftError("libnftables context closed")
            lib, ctx = self._lib, self._ctx
            lib.nft_ctx_output_set_flags(ctx, self._base_flags | (_OUTPUT_JSON if json_output else 0))
            lib.nft_ctx_set_dry_run(ctx, dry_run)
            try:
                rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
                out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
                err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
            finally:
                lib.nft_ctx_set_dry_run(ctx, False)
            if len(text) > _TRIM_AFTER or json_output:
                # A whole-table load or listing leaves megabytes free in this thread's malloc arena (about
                # 1 MB per 1k set elements); hand them back rather than carry them for the agent's life.
                _malloc_trim()
            if rc != 0:
                raise LibNftError(f"libnftables failed ({rc}): {err[:2000]}")
            return out

    async def run(self, text: str, *, json_output: bool = False, dry_run: bool = False) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_in_worker, text, json_output, dry_run)

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None  # type: ignore[assignment]
        self._pool.shutdown(wait=False)

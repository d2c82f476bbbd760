"""One allocating process for the IPAM concurrency tests and benchmark: `count` automatic assignments of one IPv4
address each, one new handle per assignment, as a CNI plugin on `host` would make them.

    python -m tests.ipam.alloc_worker --host h1 --count 1000 --prefix p0 (--embedded FILE | --etcd URL,URL)
                                      [--progress FILE] [--start-at EPOCH]

Prints one JSON object: {"allocated": {handle: address}, "failures": [message...], "seconds": float,
"cpu_seconds": float} (wall time and this process's CPU time for the assignments).
A failed assignment releases its handle (as a CNI plugin does on a failed ADD) and is counted, not retried.
`--progress` gets the number done so far, rewritten every 25 assignments; `--start-at` makes several
workers start at the same moment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

from calico.datastore.kv import KVStore
from calico.ipam import AutoAssignArgs, IPAMClient, IPAMError


async def open_kv(args: argparse.Namespace) -> KVStore:
    if args.embedded:
        from calico.datastore.embedded import EmbeddedKV

        return await EmbeddedKV.open(args.embedded)
    from calico.datastore.etcd import EtcdKV

    return await EtcdKV.connect(args.etcd.split(","), timeout=10.0)


async def run(args: argparse.Namespace) -> dict[str, object]:
    kv = await open_kv(args)
    ipam = IPAMClient(kv, timeout=30.0)
    allocated: dict[str, str] = {}
    failures: list[str] = []
    if args.start_at:
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        for i in range(args.count):
            handle = f"{args.prefix}-{i}"
            try:
                got = await ipam.auto_assign(AutoAssignArgs(num4=1, handle_id=handle, hostname=args.host,
                                                            attrs={"namespace": "default", "pod": handle}))
                allocated[handle] = str(got.ipv4[0])
            except IPAMError as e:
                failures.append(f"{handle}: {type(e).__name__}: {e}")
                with contextlib.suppress(IPAMError):
                    await ipam.release_by_handle(handle)
            if args.progress and i % 25 == 24:
                tmp = f"{args.progress}.tmp"
                with open(tmp, "w") as f:
                    f.write(str(i + 1))
                os.replace(tmp, args.progress)
        return {"allocated": allocated, "failures": failures, "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - c0}
    finally:
        await kv.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--embedded")
    ap.add_argument("--etcd")
    ap.add_argument("--progress")
    ap.add_argument("--start-at", type=float, default=0.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()

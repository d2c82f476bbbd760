"""Small programs the benchmarks run inside namespaces, and how they are started and stopped.

`PROBER` retries a TCP connect until it succeeds and prints the CLOCK_MONOTONIC time of success; `LISTENER` lets
the kernel answer SYNs; `iperf` runs one single-stream iperf3 measurement. Every process here is the caller's
own child, started in a namespace by name and killed by PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

# A prober run inside the client namespace: prints "ready", then retries a TCP connect (each attempt a fresh
# socket, 2 ms timeout) until one succeeds or the deadline passes; prints the CLOCK_MONOTONIC time of success.
PROBER = r"""
import errno, select, socket, sys, time
dst, port, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()  # "go"
tries = 0
while time.monotonic() < deadline:
    tries += 1
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    start = time.monotonic()
    try:
        s.connect((dst, port))
    except BlockingIOError:
        pass
    except OSError:
        s.close(); time.sleep(0.001); continue
    _, w, _ = select.select([], [s], [], 0.002)
    if w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        print(f"ok {time.monotonic():.6f} {tries}", flush=True)
        s.close(); sys.exit(0)
    s.close()
    left = 0.002 - (time.monotonic() - start)
    if left > 0:
        time.sleep(left)
print(f"timeout {time.monotonic():.6f} {tries}", flush=True)
sys.exit(1)
"""

# A listener that only needs the kernel to answer SYNs (the backlog does that); bounded in time.
LISTENER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[3])
s.settimeout(0.2)
while time.monotonic() < deadline:
    try:
        c, _ = s.accept(); c.close()
    except OSError:
        pass
"""


def kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()  # our own child, by PID
    proc.wait(timeout=5)


def spawn_in(ns: str, code: str, *args: str) -> subprocess.Popen[str]:
    """Run `code` with `args` inside namespace `ns`; returns once it printed "ready"."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        kill(proc)
        raise RuntimeError(f"helper in {ns} did not start")
    return proc


def iperf(server_ns: str, server_ip: str, client_ns: str, seconds: int) -> float:
    """One single-stream TCP run; bits/s as the receiver saw them. Both ends are our children, killed by PID."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip, "-p", "5201"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        res = subprocess.run(
            ["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-p", "5201", "-t", str(seconds), "-J"],
            capture_output=True, text=True, timeout=seconds + 20, check=True,
        )
        return float(json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        kill(server)

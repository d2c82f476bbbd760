"""A probe between two namespaces: a short-lived listener in the destination, one round trip from the source.

Returns a `ProbeResult`; never leaves a process behind (the listener is killed by its PID).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from calico.lab.netns import exec_argv, run

PROTOS = ("tcp", "udp", "sctp", "icmp")


@dataclass(frozen=True)
class ProbeResult:
    src: str
    dst: str
    dst_ip: str
    proto: str
    port: int | None
    ok: bool
    elapsed_ms: float
    error: str = ""
    seen_from: str = ""  # the source address the destination saw (not for icmp)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def probe(
    src_ns: str, dst_ns: str, dst_ip: str, proto: str = "tcp", port: int = 8080, timeout: float = 1.0,
    src_ip: str = "", names: tuple[str, str] = ("", ""), listen: tuple[str, int] | None = None,
) -> ProbeResult:
    """`listen` puts the listener on another address/port than the one dialled (to see a DNAT at work)."""
    start = time.monotonic()
    if proto == "icmp":
        fam = "-6" if ":" in dst_ip else "-4"
        extra = ["-I", src_ip] if src_ip else []
        res = run(*exec_argv(src_ns, ["ping", fam, "-c1", "-W", str(max(1, round(timeout))), *extra, dst_ip]),
                  check=False, timeout=timeout + 5)
        return ProbeResult(names[0] or src_ns, names[1] or dst_ns, dst_ip, proto, None, res.returncode == 0,
                           (time.monotonic() - start) * 1000)
    agent = [sys.executable, "-m", "calico.lab.probe_agent"]
    listen_ip, listen_port = listen or (dst_ip, port)
    listener = subprocess.Popen(
        exec_argv(dst_ns, [*agent, "listen", listen_ip, str(listen_port), proto, str(timeout + 3)]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    error = ""
    try:
        assert listener.stdout is not None
        if listener.stdout.readline().strip() != "ready":
            error = f"listener on [{listen_ip}]:{listen_port}/{proto} did not start"
            ok = False
        else:
            res = run(*exec_argv(src_ns, [*agent, "send", dst_ip, str(port), proto, str(timeout), src_ip]),
                      check=False, timeout=timeout + 10)
            ok = res.returncode == 0
    finally:
        listener.kill()
        out, err = listener.communicate(timeout=5)
        if not error and listener.returncode not in (0, -9) and err:
            error = err.strip().splitlines()[-1]
    seen = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("from ")]
    return ProbeResult(names[0] or src_ns, names[1] or dst_ns, dst_ip, proto, port, ok,
                       (time.monotonic() - start) * 1000, error, seen[-1] if seen else "")

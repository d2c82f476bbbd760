"""The two ends of a probe, run inside namespaces: `python -m calico.lab.probe_agent listen|send ...`.

listen ADDR PORT PROTO SECONDS: echo whatever arrives (tcp, udp, sctp) until SECONDS pass; prints "ready", then
"from PEER" for each round trip (the source address it saw: what natOutgoing tests look at).
send ADDR PORT PROTO TIMEOUT [SRC]: one round trip; exit 0 when the echo came back, 1 otherwise.
Both are bounded in time; neither ever loops without a deadline.
"""

from __future__ import annotations

import socket
import sys
import time

PAYLOAD = b"calico-probe"


def _socket(addr: str, proto: str) -> socket.socket:
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    if proto == "udp":
        return socket.socket(fam, socket.SOCK_DGRAM)
    if proto == "sctp":
        return socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    return socket.socket(fam, socket.SOCK_STREAM)


def listen(addr: str, port: int, proto: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    s = _socket(addr, proto)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if proto != "udp":
        s.listen(16)
    print("ready", flush=True)
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            if proto == "udp":
                data, peer = s.recvfrom(64)
                s.sendto(data, peer)
                print(f"from {peer[0]}", flush=True)
            else:
                conn, peer = s.accept()
                print(f"from {peer[0]}", flush=True)
                with conn:
                    conn.settimeout(1.0)
                    conn.sendall(conn.recv(64))
        except OSError:
            continue
    return 0


def send(addr: str, port: int, proto: str, timeout: float, src: str = "") -> int:
    s = _socket(addr, proto)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        if proto == "udp":
            s.sendto(PAYLOAD, (addr, port))
            ok = s.recvfrom(64)[0] == PAYLOAD
        else:
            s.connect((addr, port))
            s.sendall(PAYLOAD)
            ok = s.recv(64) == PAYLOAD
    except OSError:
        ok = False
    finally:
        s.close()
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    cmd, addr, port, proto, seconds, *rest = argv
    if cmd == "listen":
        return listen(addr, int(port), proto, float(seconds))
    return send(addr, int(port), proto, float(seconds), rest[0] if rest else "")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

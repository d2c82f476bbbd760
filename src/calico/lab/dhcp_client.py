"""A VM's DHCP client: busybox `udhcpc` in the VM's namespace, with a script that applies the lease.

Enters: a VM namespace whose `eth0` is up. Leaves: eth0 with the leased address and prefix, the default route
via the offered router and the classless static routes; raises `LabError` when no lease comes in time.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from calico.lab.netns import LabError, exec_argv

# udhcpc calls the script with the event as $1 and the lease in the environment.
SCRIPT = r"""#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" scope global ;;
  bound|renew)
    ip addr flush dev "$interface" scope global
    ip addr add "$ip/$mask" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    set -- $staticroutes
    while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    : > "$LEASE_FILE"
    for v in ip mask router dns domain staticroutes mtu lease serverid; do
      eval "echo $v=\$$v" >> "$LEASE_FILE"
    done ;;
esac
exit 0
"""


def run_in(vm_ns: str, timeout: float = 20.0) -> dict[str, str]:
    """Ask for a lease on eth0 and apply it; returns what the server offered."""
    with tempfile.TemporaryDirectory(prefix="cl-dhcp-") as tmp:
        script = Path(tmp) / "udhcpc.sh"
        script.write_text(SCRIPT)
        script.chmod(0o755)
        lease = Path(tmp) / "lease"
        argv = exec_argv(vm_ns, ["env", f"LEASE_FILE={lease}", "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n",
                                 "-t", "10", "-T", "1", "-s", str(script)])
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise LabError(f"no DHCP lease in {vm_ns} within {timeout:.0f}s") from None
        if res.returncode != 0 or not lease.exists():
            raise LabError(f"no DHCP lease in {vm_ns}: {res.stderr.strip()[-300:]}")
        return dict(line.split("=", 1) for line in lease.read_text().splitlines() if "=" in line)

"""The lab's namespace commands: those of `calico.workloads.ip` (the one home of `ip` commands), under the
names the lab has always used."""

from __future__ import annotations

from calico.workloads.ip import NETNS_DIR, WiringError, add, delete, exec_argv, exists, ip, run, sysctl

LabError = WiringError  # a lab command failed; the message says which

__all__ = ["NETNS_DIR", "LabError", "add", "delete", "exec_argv", "exists", "ip", "run", "sysctl"]

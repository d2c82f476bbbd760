"""Workloads on a host, wired the way Calico's CNI plugin wires them, with addresses from Calico IPAM.

Enters: a workload's identity (orchestrator, namespace, name, node, labels, ports, profiles), the host's and the
workload's network namespaces, a datastore (`KVStore`). Leaves: a veth pair (`cali…` on the host, `eth0` in the
workload) with the workload's addresses and routes, the addresses allocated in IPAM under the workload's handle,
and its WorkloadEndpoint in the datastore; `detach` undoes all three. Used by the lab today, by the CNI plugin
and the OpenStack driver later.

Modules: `ip` (the one home of `ip`/sysctl commands addressed to a named namespace), `wiring` (the veth, its
sysctls, addresses and routes), `endpoint` (names and the WorkloadEndpoint resource), `attach` (IPAM +
wiring + endpoint, with rollback).
"""

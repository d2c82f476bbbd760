"""calico-lab: a test world of network namespaces on one machine, running the real Calico components.

Enters: `calico-lab` commands (up, workload add/del, exec, probe, matrix, env, down) and the lab's state
directory. Leaves: namespaces named `cl-<run id>-...` (a fabric with a bridge, hosts, workloads), the daemons
it started (felix per host, etcd in the fabric, a loopback gateway to etcd), WorkloadEndpoints written to the
datastore, and probe results. Nothing is ever created in, or changed in, the root network namespace; the only
root-namespace artefacts are processes and a TCP listener on 127.0.0.1 (the etcd gateway).
"""

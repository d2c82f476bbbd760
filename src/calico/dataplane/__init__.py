"""The dataplane: turns the calculation graph's events into kernel state.

In: a `config.DataplaneConfig` (once, when the driver is built by `factory.create_driver`, which chooses the
firewall backend) and batches of `calico.calculation.events`. `state.DesiredState` folds them (pure); the
chosen backend renders and plans transactions (pure: `nftables`, or `iptables` + ipset) and runs them (its
`backend` module is the only I/O of its tool; the nat table's metadata DNAT, floating IPs from the settled
tables of `ipnat`, and natOutgoing included); `netlink` keeps workload routes (floating IPs' too) and watches
host addresses; `network` keeps the network between hosts (VXLAN and IP-in-IP devices, FDB and neighbour
entries, routes to other hosts' blocks, blackholes, the MTU file). Every verdict rule either backend renders
carries its identity (`ruleids`), and its kernel counter is read back as `counters.RawCount`s.
Out: one network namespace's Calico table, routes, tunnels and sysctls; the verdict rules' counters.
"""

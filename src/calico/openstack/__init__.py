"""OpenStack: Neutron's ports, security groups and subnets as Calico resources.

Enters: Neutron's API dicts (ports, networks, subnets, security groups and their rules, address groups,
floating IPs), from the ML2 mechanism driver running inside the Neutron server (`driver.py`, the only module
that imports Neutron) or from a resync that reads Neutron's database. Leaves: WorkloadEndpoints (orchestrator
`openstack`, namespace `openstack`), one NetworkPolicy per security group, NetworkSets for allowed address
pairs, the Felix and IPAM settings OpenStack needs, all written to the datastore through `writer.py`.

The mapping (`names`, `ports`, `secgroups`) is pure; the driver and the writer are the I/O shell.
"""

"""The Calico DHCP agent (`calico-dhcp-agent`): DHCP and IPv6 router advertisements for one compute host's VMs.

Enters: the datastore: the OpenStack driver's subnet records (`/calico/dhcp/v2/<region>/subnet/<id>`, format
`calico.resources.dhcp.SubnetRecord`) and the WorkloadEndpoints of namespace `openstack` whose `spec.node` is
this host (MAC, fixed addresses). Leaves: a dnsmasq process answering on every tap interface, its hosts and
options files and lease file under the state directory, and one bridge (`dhcp.calico`) holding each served
subnet's gateway address without a prefix route.

    state     (pure) syncer updates → subnets and this host's DHCP hosts; bad keys logged and skipped
    render    (pure) → gateway addresses, dhcp-ranges, hosts file, options file, dnsmasq's command line
    interface (I/O)  the bridge and its addresses (pyroute2; the only netlink here) + FakeGatewayInterface
    dnsmasq   (I/O)  the supervised dnsmasq child (start/restart, SIGHUP) and its files + FakeDnsmasq
    agent            the loop: syncer → state → render → restart (subnets changed) or SIGHUP (hosts changed)
    main             `calico-dhcp-agent` options, namespace interlock, signals

Nothing else in calico imports this package (only the console script).
"""

"""calico-node: one host's Calico. Registers the host's Node and runs Felix, the BGP renderer and BIRD.

Enters: the environment (upstream calico-node's variables: NODENAME, IP, IP6, IP_AUTODETECTION_METHOD,
IP6_AUTODETECTION_METHOD, AS, CALICO_NETWORKING_BACKEND, ...; the datastore from calicoctl's variables;
FELIX_* passed on to Felix), the host's interfaces and routes (netlink, read only), the Nodes and IPPools in
the datastore. Leaves: the Node resource `<NODENAME>` (spec.bgp.ipv4Address / ipv6Address / asNumber), kept
current; supervised child processes (calico-node -felix, calico-node -confd, bird); health probe answers
(-felix-live, -felix-ready, -bird-live, -bird-ready, as exit codes).

Modules, pure core first:
    autodetect    the autodetection methods over an interface snapshot (pure)
    settings      NodeSettings from the environment (pure)
    nodespec      the Node to write, and the duplicate-address check (pure)
    backoff       the restart delay schedule (pure)
    children      which children run, with which argv and environment (pure)
    hostnet       HostNetwork: interfaces and route source addresses (pyroute2, UDP connect) + a fake
    addresses     per family: detect, keep, or take the given address (over a HostNetwork)
    tunnel        VXLAN tunnel addresses (waits for calico.ipam)
    registration  NodeRegistrar: create/update the Node with compare-and-swap, refresh it
    supervisor    Supervisor: start, restart with back-off, stop children (asyncio subprocesses)
    bird_probe    what the probes ask BIRD, through calico.bgp (the one home of BIRD's control socket)
    health        the four probes
    daemon        run_node: signals, datastore, registration, supervisor, refresh loop
    main          the `calico-node` command line
"""

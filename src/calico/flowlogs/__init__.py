"""Flow logs: every flow Felix's rules decided, with the deciding policy at each stage (issue 9 section 3).

In: the kernel's packet log (each verdict rule has a logging twin, `calico.dataplane.config.FlowLogRules`, whose
NFLOG prefix is the rule's identity, `calico.dataplane.ruleids`), conntrack's per-connection counters, and the
datastore's workload and host endpoints (to name both ends). Out: one JSON record per flow per
FlowLogsFlushInterval, to a rotated JSON-lines file and a unix socket; `calicoctl flows` reads them back.

    packets (pure)      a logged packet's headers -> FlowKey
    nfnetlink (I/O)     the one home of NFLOG and conntrack netlink: bind a group, read packets without
                        blocking; dump conntrack (message building and parsing are pure functions)
    endpoints (pure)    address -> endpoint (type, namespace, name, labels), from datastore updates
    aggregator (pure)   logged packets + conntrack -> records per interval (bounded)
    records (pure)      FlowRecord, its JSON line, `calicoctl flows` filters
    outputs (I/O)       the JSON-lines file with rotation, the unix socket
    collector (I/O)     the asyncio shell Felix runs: read, poll, flush; bounded work per second
"""

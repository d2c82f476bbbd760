"""Flow explanation: which tier, policy, rule or profile decides a flow, computed from the datastore.

Enters: a snapshot of the datastore's keys (`snapshot.read`) and a flow (`flow.Flow`: source and destination,
each a workload endpoint, a host endpoint or a bare address; protocol, ports, ICMP type/code). Leaves: an
`Explanation` (`trace.py`): for each stage the flow crosses (the source's egress, the destination's ingress,
and a host endpoint's untracked, preDNAT and applyOnForward stages where they apply: `path.py`),
the tiers, the policies that select the endpoint, every rule tried with why it did or did not match, Pass
hops, tier default actions, profiles, the stage's verdict; the final verdict; and the same for the *pending*
world in which staged policies are in force. Nothing is sent on the network.

The policy semantics are not written twice: the endpoints' tiers, policies and profiles, the rendered rules
(selectors resolved to IP sets) and the sets' members come from the same calculation graph Felix runs (fed
the snapshot less what cannot concern the two endpoints, with them as its "local" ones), and the order of
evaluation is the dataplane's own walk (`dataplane.tiers.endpoint_steps`), which both firewall renderers spell
into kernel rules. What is new here is matching one packet against one rendered rule (`match.py`), the
kernel's job; the agreement tests compare the two on real packets.

    snapshot (keys at one revision) -> world (CalcGraph + DesiredState, enforced and pending)
        -> path (the stages) -> walk (steps per stage, match per rule) -> trace (Explanation) -> render (tree / JSON)
"""

"""BGP with BIRD 2: the datastore in, BIRD's configuration out; BIRD's sessions back as data.

Enters: Nodes, BGPConfigurations, BGPPeers, IPPools and this node's confirmed block affinities (from the
datastore), BGP passwords (files). Leaves: `bird.cfg` for this node, applied with `configure` on BIRD's control
socket after `bird -p` accepted it; and `BGPSession`s read from BIRD (for `calicoctl node status`).

Pure core, then the I/O shell:
    inputs    what a render reads (`BGPInputs`) and the settings Calico derives from it
    state     syncer updates folded into `BGPInputs` (bad values ignored, logged)
    peers     which sessions this node opens: mesh, BGPPeers, route reflector clients
    render    BIRD 2 configuration text
    sessions  `show protocols all` parsed into `BGPSession`s (+ reading them from a socket)
    secrets   BGP passwords from `$CALICO_BGP_SECRETS_DIR/<secret>/<key>`
    bird      the one home of BIRD I/O: control socket client, `bird -p` check
    writer    changed text -> check -> file -> `configure`
    daemon    `calico-bgp-daemon` (`calico-node -confd`): syncer -> state -> render -> writer
"""

"""The dataplane: turns the calculation graph's events into kernel state.

In: `calico.calculation.events`. `state.DesiredState` folds them (pure); `nftables.render` / `nftables.diff`
turn that into nft transactions (pure); `nftables.backend.NftBackend` runs them (the only `nft` I/O).
"""

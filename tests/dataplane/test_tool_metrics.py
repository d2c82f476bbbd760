"""Real kernel tool calls (libnftables in-process and spawned `nft`) reach Felix's counters."""

from __future__ import annotations

import pytest

from calico.dataplane.nftables.backend import NftBackend, NftError
from calico.dataplane.nftables.ops import FlushChain, ReplaceTable
from calico.dataplane.nftables.table import empty_model
from calico.dataplane.nftables.transport import LibNftTransport, SpawnTransport
from calico.dataplane.process import observe
from calico.felix.metrics import FelixMetrics
from tests.helpers.netns import World


@pytest.mark.parametrize("use_lib", [True, False], ids=["libnftables", "nft-process"])
async def test_nft_calls_and_errors_are_counted(world: World, use_lib: bool) -> None:
    m = FelixMetrics()
    stop = observe(m.observe_tool)
    b = NftBackend(LibNftTransport(world.host) if use_lib else SpawnTransport(world.host))
    try:
        await b.transport.run([ReplaceTable(empty_model())])
        assert await b.read_back() is not None
        with pytest.raises(NftError, match="No such file or directory"):
            await b.transport.run([FlushChain("nochain")])
    finally:
        stop()
        b.close()
    assert m.nft_calls.value() == 3
    assert m.nft_errors.value() == 1
    assert m.registry.get_sample_value("felix_exec_time_micros_count") == 3

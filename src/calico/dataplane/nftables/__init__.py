"""nftables dataplane: one `table inet calico` per host. render (pure) -> diff (pure) -> backend (nft I/O)."""

from calico.dataplane.driver import create_driver
from calico.dataplane.nftables.backend import NftBackend, NftError
from calico.dataplane.nftables.render import TableModel, render_model, render_replace

__all__ = ["NftBackend", "NftError", "TableModel", "create_driver", "render_model", "render_replace"]

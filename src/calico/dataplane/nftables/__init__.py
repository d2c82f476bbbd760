"""nftables dataplane: one `table inet calico` per host. render (pure) -> diff (pure) -> backend (nft I/O)."""

from calico.dataplane.nftables.backend import NftBackend, NftError, create_firewall
from calico.dataplane.nftables.render import TableModel, render_model, render_replace

__all__ = ["NftBackend", "NftError", "TableModel", "create_firewall", "render_model", "render_replace"]

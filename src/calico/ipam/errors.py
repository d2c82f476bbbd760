"""What IPAM calls can fail with; every message names the address, pool, block or handle concerned."""

from __future__ import annotations


class IPAMError(Exception):
    """Base of every IPAM failure."""


class NoUsablePool(IPAMError):
    """No IPPool may serve this request (none of the version, all disabled, not for this node or use, or a
    requested pool that does not exist)."""


class AddressesExhausted(IPAMError):
    """Fewer addresses were free than asked for; nothing of this request stays allocated."""


class AddressInUse(IPAMError):
    """`assign_ip` asked for an address that is already allocated."""


class AddressNotInPool(IPAMError):
    """The address is in no enabled IPPool."""


class AffinityConflict(IPAMError):
    """Strict affinity forbids using a block affine to another node."""


class InvalidConfig(IPAMError):
    """An IPAM configuration that Calico refuses."""


class IPAMUnavailable(IPAMError):
    """The datastore stayed unreachable past the call's deadline. When a write's outcome could not be learned,
    the message says so: releasing the handle afterwards (idempotent) leaves nothing behind."""


class TooMuchContention(IPAMError):
    """A block kept changing under us for every retry."""


class StaleContext(IPAMError):
    """An IPPool this write relied on changed since it was read: read the pools again and start over. Never leaves
    IPAM (the assigner catches it)."""

"""The packet mark bits both firewall backends use to carry a policy verdict between chains.

An `accept` inside a policy chain would end the base chain and skip the other endpoint's policy (the sender's
egress and the receiver's ingress both run in one forward hook), so a policy's verdict travels as a mark bit:
Allow sets MARK_ACCEPT and returns, Pass sets MARK_PASS and returns. MARK_HEP_ALLOWED says the untracked or
pre-DNAT stage allowed the packet, so normal host endpoint policy lets it through at once. Pure constants.
"""

from __future__ import annotations

MARK_ACCEPT = 0x00010000
MARK_PASS = 0x00020000
MARK_BOTH = MARK_ACCEPT | MARK_PASS
MARK_HEP_ALLOWED = 0x00040000

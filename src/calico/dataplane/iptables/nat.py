"""The OpenStack metadata DNAT in iptables' nat table: `cali-PREROUTING` and the jump to it.

In: the metadata target (`DataplaneConfig.metadata`), workload interface prefixes, and what
`iptables-save -t nat` shows. Out: the chain, the `iptables-restore --noflush` text that (re)writes it, and
whether the kernel holds it exactly. IPv4 only (the metadata API is). Pure.
"""

from __future__ import annotations

from calico.dataplane import hostendpoints as hepm
from calico.dataplane.config import MetadataTarget
from calico.dataplane.iptables.model import Chain, Rule
from calico.dataplane.iptables.names import NAT_PREROUTING
from calico.dataplane.iptables.text import jump_comment, parse_save, rule_lines


def nat_chain(metadata: MetadataTarget, prefixes: tuple[str, ...]) -> Chain:
    """nat cali-PREROUTING: the OpenStack metadata DNAT from each workload interface prefix."""
    rules = tuple(
        Rule(f"-i {p}+ -d {hepm.METADATA_IP}/32 -p tcp --dport {hepm.METADATA_PORT}",
             f"-j DNAT --to-destination {metadata.addr}:{metadata.port}")
        for p in prefixes
    )
    return Chain(NAT_PREROUTING, rules)


def nat_restore_text(metadata: MetadataTarget, prefixes: tuple[str, ...], have_jump: bool) -> str:
    """IPv4 `*nat` section: cali-PREROUTING (re)filled with the metadata DNAT; the PREROUTING jump if missing."""
    chain = nat_chain(metadata, prefixes)
    lines = ["*nat", f":{NAT_PREROUTING} - [0:0]"]
    if not have_jump:
        lines.append(f"-I PREROUTING 1 {jump_comment('PREROUTING', NAT_PREROUTING)} -j {NAT_PREROUTING}")
    lines += rule_lines([chain])
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def nat_in_place(save_text: str, chain: Chain) -> bool:
    """Does `iptables-save -t nat` hold `chain` exactly (by rule hashes) and the PREROUTING jump to it?"""
    return nat_has_jump(save_text) and parse_save(save_text).chains.get(chain.name) == chain.hashes


def nat_has_jump(save_text: str) -> bool:
    """Does `iptables-save -t nat` show our PREROUTING jump?"""
    return any(
        line.startswith("-A PREROUTING ") and line.endswith(f"-j {NAT_PREROUTING}") for line in save_text.splitlines()
    )

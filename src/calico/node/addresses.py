"""Which IPv4 and IPv6 address (with subnet) this node registers, decided as Calico's startup decides it.

In: one family's `FamilySetting` (`IP`/`IP6` + method), the address the Node already has, and a
`HostNetwork` to look at. Out: the address to register (`198.19.1.3/24`) or None, or `AddressError` when an
address is required and none can be found.

    IP=autodetect, or IP unset and the Node has no IPv4 yet   detect; on failure keep the Node's address,
                                                              and with none, fail
    IP6=autodetect                                            the same for IPv6 (IPv6 is only ever detected
                                                              when asked for)
    none, or unset otherwise                                  keep what the Node has
    ADDR/LEN                                                  exactly that
    ADDR                                                      with the prefix length of the local interface
                                                              that holds it (/32 or /128 if none does)

A registered address that no local interface holds only earns a warning: it may be a NAT or a VIP.
"""

from __future__ import annotations

import ipaddress
import logging

from calico.node.autodetect import CanReach, NoAddress, select
from calico.node.hostnet import HostNetwork
from calico.node.settings import FamilySetting

__all__ = ["AddressError", "detect", "resolve_family"]

log = logging.getLogger(__name__)


class AddressError(Exception):
    """A required address cannot be determined; the message says which and why."""


async def detect(setting: FamilySetting, net: HostNetwork) -> str:
    """The address `setting.method` picks now; raises NoAddress."""
    assert setting.method is not None
    interfaces = await net.interfaces()
    source = None
    if isinstance(setting.method, CanReach):
        try:
            source = await net.route_source(setting.method.destination, setting.version)
        except OSError as e:
            raise NoAddress(f"cannot reach {setting.method.destination} over IPv{setting.version}: {e}") from None
    found = select(setting.method, interfaces, setting.version, source)
    log.info("autodetected IPv%d address %s on %s (%s)", setting.version, found, found.interface,
             setting.method.describe())
    return str(found)


async def resolve_family(setting: FamilySetting, existing: str | None, net: HostNetwork) -> str | None:
    if setting.mode == "autodetect" or (setting.mode == "unset" and setting.version == 4 and not existing):
        try:
            return await detect(setting, net)
        except NoAddress as e:
            if not existing:
                raise AddressError(
                    f"{setting.variable}: could not autodetect an IPv{setting.version} address ({e}); choose "
                    f"another autodetection method or give the address explicitly"
                ) from None
            log.warning("IPv%d autodetection failed (%s); keeping the Node's address %s", setting.version, e, existing)
            await _warn_if_not_local(existing, net)
            return existing
    if setting.mode == "given":
        assert setting.given is not None
        return await _with_local_prefix(setting.given, net)
    if existing:
        await _warn_if_not_local(existing, net)
    return existing


async def _with_local_prefix(given: str, net: HostNetwork) -> str:
    if "/" in given:
        await _warn_if_not_local(given, net)
        return given
    ip = ipaddress.ip_address(given)
    for iface in await net.interfaces():
        for addr in iface.addresses:
            if addr.ip == ip:
                log.info("using %s from the environment, with the subnet of %s", addr, iface.name)
                return str(addr)
    log.warning("no local interface holds %s; registering it as /%d", ip, ip.max_prefixlen)
    return f"{ip}/{ip.max_prefixlen}"


async def _warn_if_not_local(address: str, net: HostNetwork) -> None:
    ip = ipaddress.ip_interface(address).ip
    if not any(a.ip == ip for i in await net.interfaces() for a in i.addresses):
        log.warning("IPv%d address %s is not assigned to any interface of this host", ip.version, ip)

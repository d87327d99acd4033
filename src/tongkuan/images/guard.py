"""Which addresses a picUrl may reach.

Everything that is not a public unicast address is refused: private, loopback, link-local
(cloud metadata lives there), IPv6 site-local (`fec0::/10`, deprecated but still routed
inside some networks), multicast, reserved, unspecified, shared (CGNAT), and the IPv6
forms that embed such an IPv4 address (mapped, 6to4, NAT64 are checked on the embedded
address). Loopback can be allowed for local testing only.
"""

from __future__ import annotations

import ipaddress

from tongkuan.errors import ForbiddenAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata endpoints not covered by link-local (Alibaba Cloud's 100.100.100.200 is CGNAT space).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")})


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def check_address(address: IPAddress, allow_loopback: bool = False) -> None:
    """Raise `ForbiddenAddress` unless `address` is one we may connect to."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            check_address(embedded, allow_loopback)
            return
    if address in METADATA_ADDRESSES:
        raise ForbiddenAddress(f"address {address} is a cloud metadata endpoint")
    if address.is_loopback:
        if allow_loopback:
            return
        raise ForbiddenAddress(f"address {address} is loopback")
    for label, flag in (
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    ):
        if flag:
            raise ForbiddenAddress(f"address {address} is {label}")

"""Which addresses a picUrl may reach.

Everything that is not a public unicast address is refused: private, loopback, link-local
(cloud metadata lives there), IPv6 site-local (`fec0::/10`, deprecated but still routed
inside some networks), multicast, reserved, unspecified, shared (CGNAT), and the IPv6
forms that embed such an IPv4 address (mapped, 6to4, NAT64 are checked on the embedded
address). Loopback can be allowed for local testing only.

`host_key` names the host a picUrl reaches however its URL spells it, for the limits that
count downloads or name lookups per host.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache

from publicsuffixlist import PublicSuffixList

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


_IPV4_SPELLING = frozenset("0123456789abcdefx.")  # what inet_aton reads: 127.1, 2130706433, 0x7f.0.0.1
IPV6_NETWORK = 64  # one network's addresses are one host: a /64 is what a single machine is given


def host_key(host: str) -> str:
    """One name for the host a URL's `host` reaches, whatever its spelling: an IP address
    in any form the resolver reads (`127.1`, `2130706433`, `0x7f000001`, an IPv4-mapped
    IPv6 address) is that address in its usual form (an IPv6 address its /64 network);
    `localhost` and its subdomains are `127.0.0.1`; any other name is its registrable
    domain (`a.example.co.uk` -> `example.co.uk`), so wildcard subdomains of one domain
    are one host. Case and a trailing dot never matter.

    The public suffix list is the copy bundled with `publicsuffixlist`, never fetched.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    address = _literal(name)
    if address is not None:
        return _address_key(address)
    if name == "localhost" or name.endswith(".localhost"):
        return "127.0.0.1"
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # no resolver takes it either; the name itself is key enough
    return _suffixes().privatesuffix(name) or name


def _literal(name: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        pass
    if not name or not set(name) <= _IPV4_SPELLING:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None


def _address_key(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.is_loopback:
        return str(address)
    return str(ipaddress.ip_network(f"{address}/{IPV6_NETWORK}", strict=False))


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the bundled list, ICANN and private suffixes (github.io) alike

"""The picUrl address guard and URL checks, as functions: no packet leaves loopback here."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest

from tongkuan.errors import ForbiddenAddress, ImageFetchError
from tongkuan.images.fetch import FetchPolicy, check_url
from tongkuan.images.guard import check_address, host_key


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "127.0.0.1",
        "127.5.5.5",
        "0.0.0.0",
        "169.254.169.254",
        "100.100.100.200",
        "100.64.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",  # site-local (deprecated, still routed inside some networks)
        "feff:ffff::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
        "2002:7f00:1::",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "140.205.94.189", "2400:3200::1"])
def test_public_addresses_pass(address: str) -> None:
    check_address(ipaddress.ip_address(address))


def test_loopback_passes_only_when_allowed_and_private_never_does() -> None:
    check_address(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True)
    with pytest.raises(ForbiddenAddress):
        check_address(ipaddress.ip_address("10.1.2.3"), allow_loopback=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/a.jpg",  # decimal 127.0.0.1
        "http://0x7f000001/a.jpg",  # hex
        "http://0177.0.0.1/a.jpg",  # octal
        "http://127.1/a.jpg",  # short form
        "http://0/a.jpg",
        "http://[::1]/a.jpg",
        "http://[::ffff:7f00:1]/a.jpg",
        "http://localhost/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://user:pass@example.com/a.jpg",
        "http://example.com@127.0.0.1/a.jpg",
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
    ],
)
def test_hostile_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url(url, FetchPolicy())


def test_the_allow_list_limits_hosts_by_name_and_subdomain() -> None:
    policy = FetchPolicy(allowed_hosts=frozenset({"alicdn.com"}), allow_loopback=True)
    with pytest.raises(ForbiddenAddress, match="allow-list"):
        check_url("http://127.0.0.1/a.jpg", policy)
    with pytest.raises(ForbiddenAddress, match="allow-list"):
        check_url("http://evilalicdn.com/a.jpg", policy)


def test_a_checked_url_connects_to_the_checked_address_and_keeps_the_name() -> None:
    target = check_url("http://localhost:8080/x.jpg?a=1", FetchPolicy(allow_loopback=True))
    assert target.host == "localhost"
    assert target.address.is_loopback
    assert target.connect_url in ("http://127.0.0.1:8080/x.jpg?a=1", "http://[::1]:8080/x.jpg?a=1")


def test_a_malformed_url_is_a_fetch_error() -> None:
    with pytest.raises(ImageFetchError):
        check_url("http://[::1/a.jpg", FetchPolicy())


def resolving_to(address: str) -> Any:
    """A getaddrinfo that answers `address` for every name (no lookup leaves the machine)."""

    def fake(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return fake


@pytest.mark.parametrize("address", ["10.20.30.40", "fec0::1234", "127.0.0.1"])
def test_a_refused_host_name_does_not_reveal_what_it_resolved_to(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to(address))
    with pytest.raises(ForbiddenAddress, match="does not resolve to a public address") as refused:
        check_url("http://intranet.example/a.jpg", FetchPolicy())
    assert address not in str(refused.value)


@pytest.mark.parametrize("url", ["HTTP://10.0.0.1/a.jpg", "HtTpS://[::1]/a.jpg", "FILE:///etc/passwd"])
def test_schemes_are_checked_in_any_case(url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url(url, FetchPolicy())


def test_an_upper_case_scheme_is_a_url_not_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", resolving_to("8.8.8.8"))
    target = check_url("HTTPS://img.example/a.jpg", FetchPolicy())
    assert target.connect_url == "https://8.8.8.8:443/a.jpg"


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1.",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f000001",
        "0x7F.0.0.1",
        "0177.0.0.1",
        "localhost",
        "LOCALHOST.",
        "shop.localhost",
        "::ffff:127.0.0.1",
        "[::ffff:7f00:1]",
    ],
)
def test_every_spelling_of_an_address_has_one_host_key(host: str) -> None:
    assert host_key(host) == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("a.example.com", "example.com"),
        ("b.example.com", "example.com"),
        ("B.Example.COM.", "example.com"),
        ("example.com", "example.com"),
        ("a.example.co.uk", "example.co.uk"),
        ("x.y.z.example.co.uk", "example.co.uk"),
        ("203.0.113.7.nip.io", "nip.io"),
        ("shop.github.io", "shop.github.io"),  # a suffix anyone may register under is kept apart
        ("img.中国", "img.xn--fiqs8s"),
        ("img.xn--fiqs8s", "img.xn--fiqs8s"),
        ("com", "com"),
        ("::1", "::1"),
        ("[2001:DB8::1]", "2001:db8::/64"),  # one network's addresses are one host
        ("2001:db8::ffff:1", "2001:db8::/64"),
        ("203.0.113.7", "203.0.113.7"),
    ],
)
def test_host_names_key_on_their_registrable_domain(host: str, key: str) -> None:
    assert host_key(host) == key


def test_different_hosts_keep_different_keys() -> None:
    keys = {host_key(h) for h in ("a.example.com", "a.example.org", "203.0.113.7", "203.0.113.8", "::1")}
    assert len(keys) == 5

"""Fetching picUrls end to end against a server on 127.0.0.1: limits, redirects, timeouts,
and the bounds on name lookups that outlive their fetch."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.utils.fileserver import FileServer
from tongkuan.errors import ForbiddenAddress, ImageFetchError, ImageTooLarge, ServiceBusy
from tongkuan.images import fetch
from tongkuan.images.fetch import FetchPolicy, fetch_url

LOCAL = FetchPolicy(allow_loopback=True, total_timeout=3.0, max_bytes=1024 * 1024)


def test_a_local_image_is_fetched_whole(file_server: FileServer) -> None:
    body = fetch_url(file_server.url("grocery_store/iconic/Alpro-Fresh-Soy-Milk_Iconic.jpg"), LOCAL)
    assert body.startswith(b"\xff\xd8")


def test_loopback_is_refused_unless_the_operator_allows_it(file_server: FileServer) -> None:
    with pytest.raises(ForbiddenAddress, match="loopback"):
        fetch_url(file_server.url("grocery_store/classes.csv"), FetchPolicy())


def test_a_redirect_into_private_space_is_refused_before_connecting(file_server: FileServer) -> None:
    url = file_server.url("redirect?to=http://10.0.0.1/secret.jpg")
    with pytest.raises(ForbiddenAddress, match="private"):
        fetch_url(url, LOCAL)


def test_a_redirect_to_metadata_is_refused(file_server: FileServer) -> None:
    url = file_server.url("redirect?to=http://169.254.169.254/latest/meta-data/")
    with pytest.raises(ForbiddenAddress):
        fetch_url(url, LOCAL)


def test_redirects_are_followed_within_the_limit(file_server: FileServer) -> None:
    target = file_server.url("grocery_store/iconic/Alpro-Fresh-Soy-Milk_Iconic.jpg")
    assert fetch_url(file_server.url(f"redirect?to={target}"), LOCAL).startswith(b"\xff\xd8")
    loop = file_server.url("redirect?to=/redirect?to=/redirect?to=/redirect?to=/redirect?to=/x")
    with pytest.raises(ImageFetchError, match="redirected more than"):
        fetch_url(loop, LOCAL)


@pytest.mark.parametrize("query", ["bytes=5000000", "bytes=5000000&nolength=1"])
def test_bodies_over_the_size_limit_are_cut(file_server: FileServer, query: str) -> None:
    with pytest.raises(ImageTooLarge):
        fetch_url(file_server.url(f"big?{query}"), LOCAL)


def test_a_slow_server_hits_the_deadline(file_server: FileServer) -> None:
    policy = FetchPolicy(allow_loopback=True, total_timeout=1.5)
    with pytest.raises(ImageFetchError, match="longer than|timed out"):
        fetch_url(file_server.url("slow"), policy)


@pytest.mark.parametrize(
    "path",
    [
        "late?seconds=30",  # no answer at all
        "slow-headers",  # the headers trickle in, each byte within the read timeout
        "slow-redirect?seconds=0.6&hops=4",  # every hop is quick enough, all of them are not
    ],
)
def test_one_deadline_covers_the_whole_fetch(file_server: FileServer, path: str) -> None:
    """Connect, headers, every redirect and the body share one deadline, however the time is spent."""
    policy = FetchPolicy(allow_loopback=True, total_timeout=1.5, max_redirects=5)
    started = time.monotonic()
    with pytest.raises(ImageFetchError, match="longer than 1.5 s"):
        fetch_url(file_server.url(path), policy)
    assert time.monotonic() - started < 1.5 + 0.5


def test_a_host_name_that_resolves_slowly_hits_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        time.sleep(3)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    started = time.monotonic()
    with pytest.raises(ImageFetchError, match="longer than 1 s"):
        fetch_url("http://slow-dns.test/a.jpg", FetchPolicy(total_timeout=1.0))
    assert time.monotonic() - started < 1.0 + 0.5


def test_an_unknown_host_name_reads_as_a_refused_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a name exists inside the operator's network is not for callers to learn."""

    def unknown(host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(ForbiddenAddress) as unresolved:
        fetch_url("http://no-such-host.test/a.jpg", FetchPolicy())
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port))],
    )
    with pytest.raises(ForbiddenAddress) as private:
        fetch_url("http://no-such-host.test/a.jpg", FetchPolicy())
    assert str(unresolved.value) == str(private.value)


def test_http_errors_are_reported_with_their_status(file_server: FileServer) -> None:
    with pytest.raises(ImageFetchError, match="HTTP 404"):
        fetch_url(file_server.url("no/such/file.jpg"), LOCAL)


def test_a_dns_answer_that_changes_after_the_check_is_never_used(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first answer is checked and connected to; a rebinding second answer is never asked for."""
    real = socket.getaddrinfo
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1"])
    calls: list[str] = []

    def rebinding(host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host == "rebind.test":
            calls.append(host)
            return real(next(answers), port, *args, **kwargs)  # type: ignore[arg-type]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = file_server.url("grocery_store/iconic/Alpro-Fresh-Soy-Milk_Iconic.jpg").replace("127.0.0.1", "rebind.test")
    assert fetch_url(url, LOCAL).startswith(b"\xff\xd8")
    assert calls == ["rebind.test"]


def test_a_host_whose_answers_include_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def mixed(host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host == "mixed.test":
            return [*real("8.8.8.8", port, *args, **kwargs), *real("192.168.1.10", port, *args, **kwargs)]  # type: ignore[arg-type]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(ForbiddenAddress, match="does not resolve to a public address") as refused:
        fetch_url("http://mixed.test/a.jpg", FetchPolicy())
    assert "192.168" not in str(refused.value)  # what the name resolved to stays unsaid


@pytest.mark.parametrize(
    ("host", "address"), [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("203.0.113.7", "203.0.113.7")]
)
def test_an_ip_literal_resolves_to_itself_without_a_name_lookup(
    host: str, address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the lookup threads are few and shared: an address needs none of them
    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError("looked up")

    monkeypatch.setattr(fetch._lookups, "resolve", no_lookup)
    assert [str(ip) for ip in fetch.resolve(host, 80)] == [address]


class BlockingDns:
    """A getaddrinfo under which names starting with `slow` hang until `release` is set and
    others answer 192.0.2.1 at once; no lookup leaves the machine."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, host: str, port: object, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        with self._lock:
            self.calls[host] += 1
        if host.startswith("slow"):
            self.release.wait(30)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]


@pytest.fixture
def blocking_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlockingDns]:
    dns = BlockingDns()
    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr(fetch, "_lookups", fetch.NameLookups())  # none left over from other tests
    try:
        yield dns
    finally:
        dns.release.set()


def resolve_within(host: str, seconds: float) -> list[str]:
    """`host`'s addresses, asked like a fetch with `seconds` left."""
    with fetch._until(time.monotonic() + seconds):
        return [str(address) for address in fetch.resolve(host, 80)]


def abandon(hosts: list[str]) -> None:
    """Ask for each of `hosts` from a thread of its own and give up after 0.2 s, as a fetch
    whose deadline passes does; their lookups go on."""

    def ask(host: str) -> None:
        with pytest.raises(fetch.DeadlinePassed):
            resolve_within(host, 0.2)

    threads = [threading.Thread(target=ask, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def answered_at_once(host: str) -> list[str] | Exception:
    started = time.monotonic()
    try:
        answer: list[str] | Exception = resolve_within(host, 5.0)
    except Exception as exc:  # refused: an answer too
        answer = exc
    assert time.monotonic() - started < 1.0, host
    return answer


def wait_for_no_lookups() -> None:
    deadline = time.monotonic() + 5
    while fetch._lookups.in_flight():
        assert time.monotonic() < deadline, "lookups were not released"
        time.sleep(0.01)


def test_callers_of_one_slow_name_share_its_lookup(blocking_dns: BlockingDns) -> None:
    slow = [f"slow{i}.test" for i in range(3)]
    abandon(slow * 6)  # 18 callers of 3 names: one lookup each
    assert all(blocking_dns.calls[host] == 1 for host in slow)
    assert answered_at_once("fresh.test") == ["192.0.2.1"]
    assert fetch._lookups.in_flight() == 3
    blocking_dns.release.set()
    wait_for_no_lookups()


def test_when_slow_names_hold_every_lookup_a_new_name_is_refused_at_once(blocking_dns: BlockingDns) -> None:
    abandon([f"slow{i}.test" for i in range(fetch.LOOKUP_THREADS)])
    refused = answered_at_once("fresh.test")
    assert isinstance(refused, ServiceBusy) and isinstance(refused, ImageFetchError)
    assert "name lookups" in str(refused) and blocking_dns.calls["fresh.test"] == 0
    assert fetch._lookups.in_flight() == fetch.LOOKUP_THREADS  # the slow ones still hang
    blocking_dns.release.set()
    wait_for_no_lookups()  # and end once their names answer
    assert answered_at_once("fresh.test") == ["192.0.2.1"]


def test_one_domain_holds_at_most_half_of_the_lookups(blocking_dns: BlockingDns) -> None:
    share = fetch.LOOKUP_THREADS // 2
    abandon([f"slow{i}.wildcard.test" for i in range(share)])
    refused = answered_at_once("slow-next.wildcard.test")
    assert isinstance(refused, ServiceBusy) and "wildcard.test" in str(refused)
    assert answered_at_once("fresh.test") == ["192.0.2.1"]  # other domains still resolve
    blocking_dns.release.set()
    wait_for_no_lookups()

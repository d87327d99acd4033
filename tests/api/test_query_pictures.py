"""How the API edge reads a query picture: a URL naming this service's own stored pictures is
read from the store (a missing one is not found, never fetched), and the description cache key
of a picture is scoped by its caller, so one app cannot time another's searches."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from starlette.requests import Request

from tongkuan.api.limits import FetchSlots
from tongkuan.api.request import load_either, load_picture, load_uploaded, own_sites, page_caller
from tongkuan.errors import ForbiddenAddress, ImageNotFound
from tongkuan.images.decode import Decoded, content_hash
from tongkuan.search.timing import StageClock

STORED = "0123456789abcdef0123456789abcdef.jpg"
MISSING = "fedcba9876543210fedcba9876543210.jpg"


class FakeEngine:
    """The engine's picture methods over a folder; every fetch is refused as a loopback one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fetched: list[str] = []

    def stored_picture_path(self, name: str) -> Path:
        if not (self.root / name).is_file() or "/" in name:
            raise ImageNotFound(f"no stored image {name!r}")
        return self.root / name

    def uploaded_picture(self, image_id: str) -> bytes:
        return self.stored_picture_path(f"{image_id}.jpg").read_bytes()

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        raise ForbiddenAddress("address 127.0.0.1 is loopback")

    def decode(self, data: bytes) -> Decoded:
        return Decoded(Image.new("RGB", (4, 4)), (4, 4), key=content_hash(data))


@pytest.fixture
def engine(tmp_path: Path) -> FakeEngine:
    (tmp_path / STORED).write_bytes(b"stored picture")
    return FakeEngine(tmp_path)


def request_to(host: str, scheme: str = "http", client: str = "10.0.0.7") -> Request:
    return Request(
        {
            "type": "http",
            "scheme": scheme,
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": [(b"host", host.encode())],
            "client": (client, 5000),
            "server": ("127.0.0.1", 8000),
        }
    )


SLOTS = FetchSlots(4, 2)


def load(engine: FakeEngine, url: str, public: str | None = None, app_key: str | None = "app") -> Decoded:
    sites = own_sites(request_to("127.0.0.1:8000"), public)
    return load_picture(engine, SLOTS, sites, url, "picUrl", StageClock(), app_key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "public"),
    [
        (f"http://127.0.0.1:8000/images/{MISSING}", None),
        (f"http://localhost:8000/images/{MISSING}", None),
        (f"http://[::1]:8000/images/{MISSING}", None),
        ("http://127.0.0.1:8000/images/missing.jpg", None),
        (f"http://127.0.0.1:8000/images/{MISSING}", "https://shop.example.com"),
        (f"https://shop.example.com/images/{MISSING}", "https://shop.example.com"),
        (f"https://SHOP.example.com:443/images/{MISSING}?x=1", "https://shop.example.com/"),
        (f"https://shop.example.com/search/images/{MISSING}", "https://shop.example.com/search"),
    ],
)
def test_a_missing_picture_at_our_own_address_is_not_found_without_a_fetch(
    engine: FakeEngine, url: str, public: str | None
) -> None:
    with pytest.raises(ImageNotFound):
        load(engine, url, public)
    assert engine.fetched == []


@pytest.mark.parametrize(
    "url",
    [f"http://127.0.0.1:8000/images/{STORED}", f"http://LOCALHOST:8000/images/{STORED}", f"//x/images/{STORED}"],
)
def test_a_stored_picture_at_our_own_address_is_read_from_the_store(engine: FakeEngine, url: str) -> None:
    url = url.replace("//x/", "https://shop.example.com/")
    picture = load(engine, url, "https://shop.example.com")
    assert picture.key is not None and picture.key.endswith(content_hash(b"stored picture"))
    assert engine.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        f"http://127.0.0.1:9000/images/{MISSING}",  # another port: another service
        f"https://other.example.com/images/{MISSING}",
        f"http://127.0.0.1:8000/pictures/{MISSING}",
    ],
)
def test_other_addresses_are_fetched_through_the_guard(engine: FakeEngine, url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        load(engine, url, "https://shop.example.com")
    assert engine.fetched == [url]


def test_the_description_cache_key_is_scoped_by_the_caller(engine: FakeEngine) -> None:
    url = f"http://127.0.0.1:8000/images/{STORED}"
    first, second = load(engine, url, app_key="first"), load(engine, url, app_key="second")
    assert first.key != second.key and load(engine, url, app_key="first").key == first.key
    sites = own_sites(request_to("127.0.0.1:8000"), None)
    names = ("image_id", "pic_url")
    by_id = load_either(engine, SLOTS, sites, STORED[:32], None, names, StageClock(), "first")  # type: ignore[arg-type]
    assert by_id.key == first.key
    near, far = page_caller(request_to("127.0.0.1:8000")), page_caller(request_to("127.0.0.1:8000", client="10.0.0.8"))
    keys = {load_uploaded(engine, STORED[:32], StageClock(), caller).key for caller in (near, far)}  # type: ignore[arg-type]
    assert len(keys) == 2 and not keys & {first.key, second.key}

"""The HTTP layer as `tongkuan serve` runs it, over raw sockets on 127.0.0.1: a request with
both Content-Length and Transfer-Encoding is refused and its connection closed, an oversized
request head is refused, an idle keep-alive connection is closed, and a picUrl naming one of
the service's own pictures is read from its store, never fetched."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Service, new_data_dir, serve, settings_for
from tongkuan.api.app import create_app
from tongkuan.cli.common import KEEP_ALIVE_S, MAX_REQUEST_HEAD

MODEL = "efficientnet-lite0"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Service]:
    data_dir = new_data_dir(tmp_path_factory.mktemp("http") / "data", model_cache)
    settings = settings_for(data_dir, model=MODEL, allow_loopback_fetch=False)
    with serve(create_app(settings), settings) as svc:  # as `tongkuan serve` runs it
        yield svc


def exchange(service: Service, raw: bytes, timeout: float = 10.0, rest: bytes = b"") -> tuple[bytes, bool]:
    """Send `raw` (and a moment later `rest`); the answer and whether the server then closed
    the connection."""
    port = int(service.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        if rest:
            time.sleep(0.3)
            try:
                sock.sendall(rest)
            except OSError:
                pass  # refused already
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                return answer, True
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
            0,
        )
        while len(body) < length:
            body += sock.recv(65536)
        try:
            closed = sock.recv(1) == b""
        except TimeoutError:
            closed = False
        return head + b"\r\n\r\n" + body, closed


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(service: Service) -> None:
    raw = (
        b"POST /taobao/image-search/url HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    answer, closed = exchange(service, raw)
    assert answer.startswith(b"HTTP/1.1 400 ") and closed
    assert b"x-frame-options: DENY" in answer and b"Content-Length and Transfer-Encoding" in answer
    assert answer.count(b"HTTP/1.1") == 1  # the smuggled request is never answered


def test_an_oversized_request_head_is_refused(service: Service) -> None:
    """h11 measures the head it holds unfinished: one still arriving past the limit is refused."""
    raw = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (MAX_REQUEST_HEAD + 1024)
    answer, closed = exchange(service, raw, rest=b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and closed


def test_an_idle_keep_alive_connection_is_closed(service: Service) -> None:
    started = time.monotonic()
    answer, closed = exchange(service, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=KEEP_ALIVE_S + 5)
    assert answer.startswith(b"HTTP/1.1 200 ") and closed
    assert KEEP_ALIVE_S - 1 < time.monotonic() - started < KEEP_ALIVE_S + 4


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_missing_picture_at_our_own_address_is_not_found_not_a_loopback_fetch(service: Service, host: str) -> None:
    url = service.base_url.replace("127.0.0.1", host) + "/images/" + "0" * 32 + ".jpg"
    body = service.get("/taobao/image-search/url", {"picUrl": url}).json()
    assert body["code"] == 400 and body["message"].startswith("图片不存在"), body
    assert "loopback" not in body["message"]


def test_a_stored_upload_is_searched_by_its_own_url(service: Service, data_root: Path) -> None:
    picture = next((data_root / "grocery_store" / "iconic").glob("*.jpg")).read_bytes()
    fields = service.signed({"image_base64": base64.b64encode(picture).decode()})
    upload = service.client.post("/taobao/upload/image", data=fields).json()
    assert upload["code"] == 200, upload
    url = service.base_url.replace("127.0.0.1", "localhost") + "/images/" + upload["data"]["picUrl"].rsplit("/")[-1]
    body = service.get("/taobao/image-search/url", {"picUrl": url}).json()
    assert body["code"] == 200, body


def test_a_plain_request_is_answered(service: Service) -> None:
    assert httpx.get(service.base_url + "/health").status_code == 200

"""What the access log writes for hostile paths and appKeys: one line, control characters
escaped, lengths capped, nothing that looks like a secret; and the client address that the
limits used."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.types import Message, Receive, Scope, Send

from tongkuan.api.access_log import MAX_APP_KEY, MAX_PATH, AccessLog, loggable


@pytest.mark.parametrize(
    "value",
    [
        "/taobao/x\nINFO forged line",
        "/taobao/x\r\n200 OK",
        "/x\x1b[31mred\x1b[0m",
        "k1\x00\x07\x7f",
        "/x\u2028y\u0085z",
    ],
)
def test_control_characters_are_escaped(value: str) -> None:
    shown = loggable(value, MAX_PATH)
    assert shown.isprintable() and "\\" in shown


def test_a_backslash_stays_distinguishable_from_an_escape() -> None:
    assert loggable("a\\x0ab", 64) != loggable("a\nb", 64)


def test_chinese_text_is_kept_as_it_is() -> None:
    assert loggable("/web/牛奶", MAX_PATH) == "/web/牛奶"


def test_long_values_are_cut() -> None:
    assert len(loggable("k" * 10_000, MAX_APP_KEY)) <= MAX_APP_KEY + 3
    assert len(loggable("/" + "\n" * 10_000, MAX_PATH)) <= MAX_PATH + 3


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("k1;appSecret=s1", "s1"),
        ("k1&APPSECRET=hunter2", "hunter2"),
        ("/taobao/x;sign=0123456789ABCDEF0123456789ABCDEF", "0123456789ABCDEF"),
        ("k1 secret:hunter2", "hunter2"),
        ("0123456789ABCDEF0123456789ABCDEF", "0123456789ABCDEF"),  # a signature given as the appKey
    ],
)
def test_what_looks_like_a_secret_is_never_written(value: str, secret: str) -> None:
    assert secret not in loggable(value, MAX_PATH)


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def logged_line(caplog: pytest.LogCaptureFixture, client: object) -> str:
    scope: Scope = {"type": "http", "method": "GET", "path": "/health", "query_string": b"appKey=k1"}
    if client is not None:
        scope["client"] = client

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    with caplog.at_level(logging.INFO, logger="tongkuan.access"):
        asyncio.run(AccessLog(_answer)(scope, receive, send))
    (record,) = [r for r in caplog.records if r.name == "tongkuan.access"]
    return record.getMessage()


def test_the_client_address_the_limits_used_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    # the address in the scope is the one uvicorn believed: the peer's, or a trusted proxy's X-Forwarded-For
    line = logged_line(caplog, ("203.0.113.5", 50123))
    assert line.startswith("GET /health 204 ") and line.endswith(" appKey=k1 client=203.0.113.5")


@pytest.mark.parametrize(("client", "shown"), [(None, "-"), (("1.2.3.4\nINFO forged", 1), "1.2.3.4\\x0aINFO forged")])
def test_a_missing_or_forged_client_address_is_logged_safely(
    caplog: pytest.LogCaptureFixture, client: object, shown: str
) -> None:
    assert logged_line(caplog, client).endswith(f" client={shown}")

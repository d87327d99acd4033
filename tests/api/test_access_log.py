"""What the access log writes for hostile paths and appKeys: one line, control characters
escaped, lengths capped, nothing that looks like a secret."""

from __future__ import annotations

import pytest

from tongkuan.api.access_log import MAX_APP_KEY, MAX_PATH, loggable


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

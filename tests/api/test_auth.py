"""DAJI signing and authentication rules, as functions (HTTP cases live in test_image_search)."""

from __future__ import annotations

import hashlib

import pytest

from tongkuan.api.auth import authenticate, sign
from tongkuan.errors import AuthError, BadCredentials

APPS = {"k1": "s3"}
BAD_CREDENTIALS = "appKey, sign or appSecret is wrong"


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def test_sign_matches_the_worked_example_of_the_api_documentation() -> None:
    params = {"appKey": "k1", "picUrl": "http://a/b.jpg", "pageNo": "0"}
    assert sign(params, "s3") == md5_upper("appKey=k1&pageNo=0&picUrl=http://a/b.jpg&secret=s3")


def test_sign_sorts_by_byte_order_keeps_empty_values_and_skips_none_and_sign() -> None:
    params = {"b": "", "a": "1", "Z": "upper first", "sign": "ignored", "n": None}
    assert sign(params, "x") == md5_upper("Z=upper first&a=1&b=&secret=x")


def test_sign_uses_raw_utf8_values_not_url_encoding() -> None:
    params = {"appKey": "k1", "picUrl": "http://a/图片 1.jpg?x=1&y=2"}
    assert sign(params, "s") == md5_upper("appKey=k1&picUrl=http://a/图片 1.jpg?x=1&y=2&secret=s")


def test_a_correct_sign_authenticates_in_either_case() -> None:
    params = {"appKey": "k1", "pageNo": "0"}
    good = sign(params, "s3")
    assert authenticate({**params, "sign": good}, APPS, allow_app_secret=False) == "k1"
    assert authenticate({**params, "sign": good.lower()}, APPS, allow_app_secret=False) == "k1"


@pytest.mark.parametrize(
    ("params", "allow", "message"),
    [
        ({"pageNo": "0"}, True, "appKey is required"),
        ({"appKey": "nobody", "appSecret": "s3"}, True, BAD_CREDENTIALS),
        ({"appKey": "k1", "sign": "0" * 32}, True, BAD_CREDENTIALS),
        ({"appKey": "k1", "appSecret": "wrong"}, True, BAD_CREDENTIALS),
        ({"appKey": "k1", "appSecret": "s3"}, False, "disabled"),
        ({"appKey": "k1"}, True, "sign (or appSecret"),
    ],
)
def test_bad_credentials_are_refused_with_a_reason(params: dict[str, str], allow: bool, message: str) -> None:
    with pytest.raises(AuthError, match=message.replace("(", r"\(")):
        authenticate(params, APPS, allow_app_secret=allow)


def test_a_signature_made_for_other_parameters_is_refused() -> None:
    signed = {"appKey": "k1", "pageNo": "0"}
    tampered = {"appKey": "k1", "pageNo": "5", "sign": sign(signed, "s3")}
    with pytest.raises(AuthError):
        authenticate(tampered, APPS, allow_app_secret=True)


def test_no_configured_apps_refuses_everyone() -> None:
    with pytest.raises(AuthError, match="TONGKUAN_APPS"):
        authenticate({"appKey": "k1", "appSecret": "s3"}, {}, allow_app_secret=True)


@pytest.mark.parametrize(
    ("unknown_key", "wrong_key"),
    [
        ({"appKey": "nobody", "appSecret": "s3"}, {"appKey": "k1", "appSecret": "wrong"}),
        ({"appKey": "nobody", "sign": "0" * 32}, {"appKey": "k1", "sign": "0" * 32}),
    ],
)
def test_an_unknown_app_key_and_a_wrong_secret_are_told_apart_by_nothing(
    unknown_key: dict[str, str], wrong_key: dict[str, str]
) -> None:
    answers = []
    for params in (unknown_key, wrong_key):
        with pytest.raises(BadCredentials) as refused:
            authenticate(params, APPS, allow_app_secret=True)
        answers.append(str(refused.value))
    assert answers[0] == answers[1]
    assert "nobody" not in answers[0]


def test_a_disabled_app_secret_is_disabled_for_unknown_app_keys_too() -> None:
    for key in ("k1", "nobody"):
        with pytest.raises(AuthError, match="disabled") as refused:
            authenticate({"appKey": key, "appSecret": "s3"}, APPS, allow_app_secret=False)
        assert not isinstance(refused.value, BadCredentials)

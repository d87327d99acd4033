"""The HTTP edge's guards, in process (no server, no model): security headers on every
answer, the API docs off by default, the Host check, the access log's escaping, the
throttle on failed authentications and the cap on JSON nesting in admin bodies.

Requests go to the ASGI app directly; a client address is only a value here, so the
throttle's "other clients" are told apart without any packet on any network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.conftest import APP_KEY, APP_SECRET
from tongkuan.api.app import create_app
from tongkuan.api.auth import sign
from tongkuan.api.guards import HostCheck
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.ingest.readers import MAX_JSON_DEPTH

TOKEN = "hardening-admin-token-0123"
ENVELOPE = {"code", "message", "data", "timestamp", "traceId"}
HERE = ("127.0.0.1", 50000)
THERE = ("198.51.100.7", 50000)  # a documentation address: never contacted, only named


class Unreachable:
    """Stands in for the engine where a test must never reach it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the engine was reached ({name})")


def app_for(tmp_path: Path, **overrides: Any) -> FastAPI:
    values: dict[str, Any] = {"data_dir": tmp_path, "apps": f"{APP_KEY}:{APP_SECRET}", "admin_token": TOKEN}
    values.update(overrides)
    app = create_app(Settings(**values), engine=cast(Engine, Unreachable()))
    app.state.engine = Unreachable()  # the lifespan that would open it does not run here
    return app


def call(
    app: ASGIApp,
    method: str,
    path: str,
    client: tuple[str, int] = HERE,
    host: str = "127.0.0.1:8000",
    **kwargs: Any,
) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://{host}") as http:
            return await http.request(method, path, **kwargs)

    return asyncio.run(send())


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return app_for(tmp_path)


# --- security headers ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/web/app.js", "/openapi.json", "/taobao/image-search/url", "/no/such/route"])
def test_every_answer_carries_the_security_headers(tmp_path: Path, path: str) -> None:
    response = call(app_for(tmp_path, api_docs=True), "GET", path)
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] in ("strict-origin-when-cross-origin", "no-referrer")


def test_the_search_page_has_no_inline_script_or_style() -> None:
    page = resources.files("tongkuan.api").joinpath("webui", "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, flags=re.DOTALL | re.IGNORECASE)
    assert scripts and all(not body.strip() for body in scripts)  # every script is a file
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", page, flags=re.IGNORECASE))
    assert not re.search(r"<style\b", page, flags=re.IGNORECASE)
    assert not re.search(r"\sstyle\s*=", page, flags=re.IGNORECASE)
    assert not re.search(r"\son[a-z]+\s*=", page, flags=re.IGNORECASE)  # no onclick= and the like
    assert not re.search(r"javascript:", page, flags=re.IGNORECASE)
    code = resources.files("tongkuan.api").joinpath("webui", "app.js").read_text(encoding="utf-8")
    assert 'setAttribute("style"' not in code and "innerHTML" not in code and "eval(" not in code


def test_the_api_docs_are_off_by_default_and_the_spec_stays(app: FastAPI) -> None:
    for path in ("/docs", "/redoc"):
        off = call(app, "GET", path)
        assert off.status_code == 404 and set(off.json()) == ENVELOPE
    assert "/taobao/image-search/url" in call(app, "GET", "/openapi.json").json()["paths"]


def test_the_api_docs_can_be_turned_on(tmp_path: Path) -> None:
    docs = call(app_for(tmp_path, api_docs=True), "GET", "/docs")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"  # its CDN scripts still run


# --- the Host check ----------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LOCALHOST"])
def test_loopback_names_are_answered(app: FastAPI, host: str) -> None:
    assert call(app, "GET", "/openapi.json", host=host).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "192.0.2.10:8000", "shop.example.com"])
def test_other_hosts_are_refused_in_the_envelope(app: FastAPI, host: str) -> None:
    refused = call(app, "GET", "/openapi.json", host=host)
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert set(body) == ENVELOPE and body["code"] == 400 and "Host" in body["message"]
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_the_public_url_host_and_listed_hosts_are_answered(tmp_path: Path) -> None:
    app = app_for(tmp_path, public_url="https://shop.example.com", allowed_hosts="*.cdn.test,192.0.2.10")
    for host in ("shop.example.com", "img.cdn.test", "192.0.2.10:8000"):
        assert call(app, "GET", "/openapi.json", host=host).status_code == 200, host
    assert call(app, "GET", "/openapi.json", host="other.example").status_code == 400


def test_any_host_is_answered_only_when_asked(tmp_path: Path) -> None:
    assert call(app_for(tmp_path, allowed_hosts="*"), "GET", "/openapi.json", host="any.example").status_code == 200


async def answered(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_health_answers_any_host_for_load_balancer_probes() -> None:
    guarded = HostCheck(answered, hosts=["127.0.0.1"])
    assert call(guarded, "GET", "/health", host="10.1.2.3:8000").status_code == 204
    assert call(guarded, "GET", "/healthz", host="10.1.2.3:8000").status_code == 400


@pytest.mark.parametrize("host", ["", "[::1", "a b", "127.0.0.1:80:80"])
def test_a_missing_or_malformed_host_header_is_refused(host: str) -> None:
    guarded = HostCheck(answered, hosts=["127.0.0.1"])
    assert call(guarded, "GET", "/", headers={"host": host}).status_code == 400


# --- the access log ------------------------------------------------------------------------


def test_the_access_log_writes_one_line_without_secrets(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tongkuan.access")
    params = {"appKey": "k1;appSecret=s3cr3t\n200 forged\x1b[2J", "appSecret": "another-s3cr3t"}
    call(app, "GET", "/taobao/x%0Aforged%1B[31m", params=params)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "tongkuan.access"]
    assert "\n" not in line and "\x1b" not in line and "\r" not in line
    assert "s3cr3t" not in line and "forged" in line  # escaped, not dropped
    assert "/taobao/x\\x0aforged\\x1b[31m" in line


# --- failed authentications ------------------------------------------------------------------


def signed(params: dict[str, str], secret: str = APP_SECRET, key: str = APP_KEY) -> dict[str, str]:
    params = {"appKey": key, **params}
    return {**params, "sign": sign(params, secret)}


def test_an_unknown_app_key_and_a_wrong_secret_get_the_same_answer(app: FastAPI) -> None:
    unknown = call(app, "GET", "/taobao/upload/image", params=signed({}, key="nobody")).json()["message"]
    wrong = call(app, "GET", "/taobao/upload/image", params=signed({}, secret="wrong")).json()["message"]
    assert unknown == wrong and "nobody" not in unknown


def test_a_client_failing_to_authenticate_is_throttled_and_others_are_not(tmp_path: Path) -> None:
    app = app_for(tmp_path, auth_failure_limit=3, auth_failure_window=30)
    wrong = signed({}, secret="wrong")
    codes = [call(app, "GET", "/taobao/upload/image", client=THERE, params=wrong).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    refused = call(app, "GET", "/taobao/upload/image", client=THERE, params=signed({}))  # right, but too late
    assert refused.status_code == 429 and set(refused.json()) == ENVELOPE
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    admin = call(app, "GET", "/admin/products", client=THERE, headers={"Authorization": f"Bearer {TOKEN}"})
    assert admin.status_code == 429  # the admin API shares the throttle
    # another client is unaffected: its credentials are checked (then keyword is missing)
    other = call(app, "GET", "/taobao/traffic/item/search", client=HERE, params=signed({}))
    assert other.status_code == 400 and "keyword" in other.json()["message"]


def test_wrong_admin_tokens_are_throttled_too(tmp_path: Path) -> None:
    app = app_for(tmp_path, auth_failure_limit=2, auth_failure_window=30)
    for _ in range(2):
        wrong = call(app, "GET", "/admin/products", client=THERE, headers={"Authorization": "Bearer nope-nope"})
        assert wrong.status_code == 401
    assert call(app, "GET", "/admin/products", client=THERE, headers={"Authorization": "Bearer x"}).status_code == 429


def test_requests_without_credentials_are_not_counted_as_guesses(tmp_path: Path) -> None:
    app = app_for(tmp_path, auth_failure_limit=2, auth_failure_window=30)
    for _ in range(5):
        assert call(app, "GET", "/taobao/upload/image", client=THERE).status_code == 401
    assert call(app, "GET", "/taobao/traffic/item/search", client=THERE, params=signed({})).status_code == 400


# --- JSON nesting in admin bodies ------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_deeply_nested_admin_bodies_are_a_400_naming_the_rule(app: FastAPI, method: str, depth: int) -> None:
    body = '{"title": "x", "customContent": ' + nested(depth) + "}"
    answer = call(
        app,
        method,
        "/admin/products/x",
        content=body.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    assert answer.status_code == 400 and set(answer.json()) == ENVELOPE
    assert f"deeper than {MAX_JSON_DEPTH}" in answer.json()["message"]


def test_a_deeply_nested_product_form_field_is_a_400_naming_the_rule(app: FastAPI) -> None:
    answer = call(
        app,
        "PUT",
        "/admin/products/x",
        data={"product": '{"a": ' + nested(100_000) + "}"},
        files={"images": ("a.jpg", b"x")},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.status_code == 400 and f"deeper than {MAX_JSON_DEPTH}" in answer.json()["message"]


def test_a_picture_name_with_a_trailing_newline_is_refused(app: FastAPI) -> None:
    body = {"images": [{"url": "http://img.example/a.jpg", "picName": "a.jpg\n"}]}
    answer = call(
        app, "PUT", "/admin/products/x", content=json.dumps(body), headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 400 and "picName" in answer.json()["message"]

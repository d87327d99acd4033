"""Property-based fuzzing of every operation in the service's own OpenAPI spec, through real
HTTP on 127.0.0.1: no 5xx, every JSON answer in the envelope.

picUrl hosts are limited to 127.0.0.1 by the allow-list, so generated URLs are refused
before any name is resolved: no packet leaves loopback. Admin operations get the admin
token on the same share of requests as DAJI ones get credentials; generated records cannot
add products (their pictures cannot be fetched or decoded) and generated itemIds do not
name catalog products.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import APP_KEY, APP_SECRET, Service, serve
from tongkuan.api.app import create_app
from tongkuan.config import Settings
from tongkuan.engine import Engine

EXAMPLES_PER_OPERATION = 60  # x 2 modes x 23 operations (small ones run out early): over 1,000
ENVELOPE = {"code", "message", "data", "timestamp", "traceId"}
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
STREAMED = ("/images/", "/admin/export")  # answers that are files or JSONL, not the envelope

schemathesis.serializer.alias("application/x-ndjson", "text/plain")


@pytest.fixture(scope="module")
def fuzz_target(catalog_engine: Engine) -> Iterator[tuple[Service, Any]]:
    settings = Settings(
        data_dir=catalog_engine.settings.data_dir,
        apps=f"{APP_KEY}:{APP_SECRET}",
        fetch_allow_hosts="127.0.0.1",
        rate_limit_qps=0,
        auth_failure_limit=0,  # generated requests fail to authenticate by the hundred, all from 127.0.0.1
        admin_token=ADMIN_TOKEN,
    )
    app = create_app(settings, engine=catalog_engine)
    with serve(app) as svc:
        yield svc, schemathesis.openapi.from_dict(app.openapi())


def send(client: httpx.Client, case: Any, authenticate: bool) -> httpx.Response:
    query = {k: str(v) for k, v in (case.query or {}).items()}
    path = case.formatted_path
    if path.startswith("/admin/"):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if authenticate else {}
        if isinstance(case.body, (dict, list)):
            return client.request(case.method.upper(), path, params=query, json=case.body, headers=headers)
        content = case.body.encode() if isinstance(case.body, str) else None
        return client.request(case.method.upper(), path, params=query, content=content, headers=headers)
    body = case.body if isinstance(case.body, dict) else None
    if authenticate:
        target = body if body is not None else query
        target.pop("sign", None)
        target.update(appKey=APP_KEY, appSecret=APP_SECRET)
    if case.method.upper() == "POST":
        form = {k: str(v) for k, v in (body or {}).items()}
        return client.post(path, params=query, data=form)
    return client.request(case.method.upper(), path, params=query)


def test_a_thousand_generated_requests_never_get_a_5xx(fuzz_target: tuple[Service, Any]) -> None:
    service, schema = fuzz_target
    sent: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                try:
                    response = send(service.client, case, authenticate=len(sent) % 3 != 0)
                except (UnicodeEncodeError, httpx.InvalidURL, httpx.LocalProtocolError):
                    return  # the client cannot even express this request
                sent.append(response.status_code)
                assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text[:300])
                if response.headers.get("content-type", "").startswith("application/json"):
                    assert ENVELOPE <= set(response.json()), response.text[:300]
                else:
                    assert response.status_code == 200 and case.formatted_path.startswith(STREAMED)

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing can be invalid about /health
    assert len(sent) >= 1000, len(sent)

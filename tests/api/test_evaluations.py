"""POST /admin/evaluations runs a check set on the service's catalog in the background and
answers the figures `tongkuan eval` prints (then in /metrics); the search page's uploads are
saved as checks with POST /admin/checks and run the same way. Admin only."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.test_admin import ICONIC, MILK, Admin, data_dir, product, running  # noqa: F401  (data_dir: the fixture)
from tests.conftest import APP_KEY, APP_SECRET
from tests.utils.fileserver import FileServer
from tongkuan.api.auth import sign

PRODUCTS = ("Arla-Standard-Milk", "Banana", "Bravo-Apple-Juice", "Oatly-Oat-Milk", "Kiwi")


def finished(admin: Admin, evaluation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (run := admin.call("GET", f"/admin/evaluations/{evaluation_id}"))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    return run  # type: ignore[no-any-return]


def test_a_check_set_runs_on_the_service_and_its_figures_reach_the_metrics(
    data_dir: Path,  # noqa: F811
    file_server: FileServer,
    data_root: Path,
) -> None:
    with running(data_dir, allow_loopback_fetch=True, metrics=True) as admin:
        for name in PRODUCTS:
            admin.call("PUT", f"/admin/products/{name}", json=product(name, file_server))
        checks = [
            {"picture": file_server.url(MILK[1]), "itemIds": [MILK[0]], "note": "shopper's photo"},
            {"picture": file_server.url(f"{ICONIC}/Kiwi_Iconic.jpg"), "itemIds": ["Kiwi"]},
        ]
        body = "\n".join(json.dumps(c) for c in checks)
        started = admin.call("POST", "/admin/evaluations", content=body)
        assert started["total"] == 2 and started["state"] in ("queued", "running", "done")
        run = finished(admin, started["evaluationId"])
        assert run["state"] == "done" and run["done"] == 2, run
        assert run["figures"]["n"] == 2 and run["figures"]["R@1"] >= 0.5  # the iconic picture finds itself
        assert [m["line"] for m in run["misses"]] == ([] if run["figures"]["R@1"] == 1 else [1])
        assert [r["evaluationId"] for r in admin.call("GET", "/admin/evaluations")] == [started["evaluationId"]]

        scraped = httpx.get(f"{admin.service.base_url}/metrics").text
        assert f'tongkuan_eval_recall{{k="1"}} {run["figures"]["R@1"]}' in scraped
        assert "tongkuan_eval_checks 2.0" in scraped

        bad = "\n".join([json.dumps({"picture": "local.jpg", "itemIds": ["Kiwi"]}), json.dumps({"picture": "x"})])
        message = admin.call("POST", "/admin/evaluations", expect=400, content=bad)
        assert "line 1: picture must be an http(s) URL here" in message and "line 2: " in message
        assert "the body is empty" in admin.call("POST", "/admin/evaluations", expect=400, content=b"")
        assert "no evaluation" in admin.call("GET", "/admin/evaluations/nope", expect=404)

        anonymous = httpx.post(f"{admin.service.base_url}/admin/evaluations", content=body)
        assert anonymous.status_code == 401
        signed = {"appKey": APP_KEY}
        signed["sign"] = sign(signed, APP_SECRET)
        assert httpx.post(f"{admin.service.base_url}/admin/checks", params=signed, json={}).status_code == 401


def test_a_search_saved_as_a_check_is_collected_and_evaluated(
    data_dir: Path,  # noqa: F811
    file_server: FileServer,
    data_root: Path,
) -> None:
    with running(data_dir, allow_loopback_fetch=True) as admin:
        for name in PRODUCTS:
            admin.call("PUT", f"/admin/products/{name}", json=product(name, file_server))
        photo = (data_root / MILK[1]).read_bytes()
        fields = {"appKey": APP_KEY, "image_base64": base64.b64encode(photo).decode()}
        fields["sign"] = sign(fields, APP_SECRET)
        image_id = admin.service.client.post("/taobao/upload/image", data=fields).json()["data"]["imageId"]

        saved = admin.call("POST", "/admin/checks", json={"imageId": image_id, "itemIds": [MILK[0]], "note": "page"})
        assert saved == {"imageId": image_id, "itemIds": [MILK[0]]}
        assert "itemId 'nobody' is not in the catalog" in admin.call(
            "POST", "/admin/checks", expect=400, json={"imageId": image_id, "itemIds": ["nobody"]}
        )
        assert "imageId must be the 32 hex digits" in admin.call(
            "POST", "/admin/checks", expect=400, json={"imageId": "../etc/passwd", "itemIds": [MILK[0]]}
        )
        collected = admin.http.get("/admin/checks")
        assert collected.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in collected.text.splitlines()]
        assert lines == [{"imageId": image_id, "itemIds": [MILK[0]], "note": "page"}]
        assert (data_dir / "checks.jsonl").exists()

        run = finished(admin, admin.call("POST", "/admin/evaluations", content=collected.text)["evaluationId"])
        assert run["state"] == "done" and run["figures"]["n"] == 1 and not run["figures"].get("failed"), run

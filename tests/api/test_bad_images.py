"""Hostile and unusual pictures through every way in: POST upload, GET upload, picUrl.

The service answers 200 for odd but valid pictures and 400 for the rest; never a 500.
"""

from __future__ import annotations

import base64
import signal
from pathlib import Path

import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service, new_data_dir
from tests.utils.bad_images import Case, corpus
from tests.utils.fileserver import FileServer
from tests.utils.server import Server
from tongkuan.api.auth import sign

CASES = corpus()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_picture_kinds_get_a_clear_answer_on_every_path(service: Service, file_server: FileServer, case: Case) -> None:
    url = file_server.put(case.name.replace(" ", "-"), case.data)

    search = service.get("/taobao/image-search/url", {"picUrl": url, "pageSize": "1"})
    assert search.json()["code"] == (200 if case.search_ok else 400), search.json()["message"]
    assert search.status_code == search.json()["code"]

    by_get = service.get("/taobao/upload/image", {"pic_url": url})
    assert by_get.json()["code"] == (200 if case.upload_ok else 400), by_get.json()["message"]

    fields = {"appKey": APP_KEY, "image_base64": base64.b64encode(case.data).decode()}
    by_post = service.client.post("/taobao/upload/image", data={**fields, "sign": sign(fields, APP_SECRET)})
    too_big_for_upload = len(case.data) > 3 * 1024 * 1024
    expected = 200 if case.upload_ok and not too_big_for_upload else (413, 400)
    assert by_post.json()["code"] in (expected if isinstance(expected, tuple) else (expected,)), by_post.json()


def test_the_corpus_has_at_least_twenty_kinds() -> None:
    assert len(CASES) >= 20


def test_corrupt_base64_is_a_400(service: Service) -> None:
    fields = {"appKey": APP_KEY, "image_base64": "iVBORw0KGgo=====broken"}
    body = service.client.post("/taobao/upload/image", data={**fields, "sign": sign(fields, APP_SECRET)}).json()
    assert body["code"] == 400 and "base64" in body["message"]


def test_the_whole_corpus_leaves_peak_memory_bounded(
    tmp_path: Path, model_cache: Path, data_root: Path, file_server: FileServer
) -> None:
    """Peak RSS of a real server process while it refuses or decodes every kind, on all paths."""
    data_dir = new_data_dir(tmp_path / "data", model_cache)
    server = Server(data_dir, "efficientnet-lite0")
    server.start()
    client = Service(f"http://127.0.0.1:{server.port}")
    try:
        client.get("/taobao/upload/image", {"pic_url": file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg")})
        baseline = server.peak_rss_mb()
        for case in CASES:
            url = file_server.put("rss-" + case.name.replace(" ", "-"), case.data)
            client.get("/taobao/image-search/url", {"picUrl": url, "pageSize": "1"})
            client.get("/taobao/upload/image", {"pic_url": url})
            fields = {"appKey": APP_KEY, "image_base64": base64.b64encode(case.data).decode()}
            client.client.post("/taobao/upload/image", data={**fields, "sign": sign(fields, APP_SECRET)})
        peak = server.peak_rss_mb()
        print(f"bad-image corpus: peak RSS {baseline:.0f} MB before, {peak:.0f} MB after")
        assert peak - baseline < 200, (baseline, peak)
    finally:
        client.client.close()
        server.stop(signal.SIGKILL)

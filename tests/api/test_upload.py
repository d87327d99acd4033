"""Image upload (GET and POST), search by imageId (V1) and by the uploaded picture's URL (V2)."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest

from tests.conftest import APP_KEY, APP_SECRET, Service
from tests.utils.fileserver import FileServer
from tongkuan.api.auth import sign


@pytest.fixture
def service(service_on_each_backend: Service) -> Service:
    """Every test here runs on the embedded and on the server backends."""
    return service_on_each_backend


QUERY = "grocery_store/images/val/Packages/Juice/Bravo-Apple-Juice/Bravo-Apple-Juice_001.jpg"
EXPECTED = "grocery-028"  # Bravo Apple Juice


def post_form(service: Service, fields: dict[str, str]) -> dict:  # type: ignore[type-arg]
    signed_fields = {"appKey": APP_KEY, **fields}
    signed_fields["sign"] = sign(signed_fields, APP_SECRET)
    return service.client.post("/taobao/upload/image", data=signed_fields).json()  # type: ignore[no-any-return]


def test_upload_by_post_then_search_by_image_id_and_by_picture_url(service: Service, data_root: Path) -> None:
    data = (data_root / QUERY).read_bytes()
    body = post_form(service, {"image_base64": base64.b64encode(data).decode()})
    assert body["code"] == 200, body
    image_id = body["data"]["imageId"]
    assert len(image_id) == 32

    v1 = service.get("/taobao/traffic/item/imgsearch", {"image_id": image_id}).json()
    assert v1["code"] == 200 and v1["data"][0]["itemId"] == EXPECTED

    picture = service.client.get(body["data"]["picUrl"].replace("//", "http://", 1))
    assert picture.status_code == 200 and picture.content == data
    v2 = service.get("/taobao/image-search/url", {"picUrl": "http:" + body["data"]["picUrl"]}).json()
    assert v2["code"] == 200 and v2["data"]["data"][0]["itemId"] == EXPECTED


def test_upload_by_get_fetches_the_url(service: Service, file_server: FileServer) -> None:
    body = service.get("/taobao/upload/image", {"pic_url": file_server.url(QUERY)}).json()
    assert body["code"] == 200 and len(body["data"]["imageId"]) == 32
    again = service.get("/taobao/upload/image", {"pic_url": file_server.url(QUERY)}).json()
    assert again["data"]["imageId"] == body["data"]["imageId"]  # content-addressed


def test_uploads_refuse_bad_input_with_clear_messages(service: Service, file_server: FileServer) -> None:
    assert "image_base64" in post_form(service, {})["message"]
    assert "base64" in post_form(service, {"image_base64": "%%%not base64%%%"})["message"]
    text = base64.b64encode(b"just some text, not an image").decode()
    assert post_form(service, {"image_base64": text})["code"] == 400
    too_big = base64.b64encode(b"\xff\xd8" + b"\x00" * (3 * 1024 * 1024 + 10)).decode()
    big = post_form(service, {"image_base64": too_big})
    assert big["code"] == 400 and "3" in big["message"]
    missing = service.get("/taobao/upload/image", {}).json()
    assert missing["code"] == 400 and "pic_url" in missing["message"]


def test_a_picture_just_under_the_limit_is_accepted_as_an_ordinary_form_sends_it(
    service: Service, data_root: Path
) -> None:
    """A form URL-encodes base64's + and / as three bytes each: the body of a 2.95 MB picture
    is over 4/3 of the limit, and must still be read."""
    photo = (data_root / QUERY).read_bytes()
    padded = photo + random.Random(0).randbytes(int(2.95 * 1024 * 1024) - len(photo))  # JPEG ignores a tail
    body = post_form(service, {"image_base64": base64.b64encode(padded).decode()})
    assert body["code"] == 200, body


def test_unknown_image_ids_and_missing_queries_are_400(service: Service) -> None:
    unknown = service.get("/taobao/traffic/item/imgsearch", {"image_id": "0" * 32}).json()
    assert unknown["code"] == 400 and "imageId" in unknown["message"]
    neither = service.get("/taobao/traffic/item/imgsearch", {}).json()
    assert neither["code"] == 400 and "image_id" in neither["message"]

"""Pictures larger than the model needs decode reduced; the API still speaks in their pixels."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.conftest import Service
from tests.utils.fileserver import FileServer
from tongkuan.domain.boxes import Box

QUERY = "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"
SCALE = 10  # 348 px -> 3480 px, decoded at a third of that


def box(param: str) -> Box:
    x1, x2, y1, y2 = (int(v) for v in param.split(","))
    return Box(x1, x2, y1, y2)


def pic_info(service: Service, url: str, **params: str) -> dict:  # type: ignore[type-arg]
    body = service.get("/taobao/image-search/url", {"picUrl": url, **params}).json()
    assert body["code"] == 200, body
    return body["data"]["picInfo"]  # type: ignore[no-any-return]


def test_regions_of_a_large_picture_are_in_its_own_pixels(
    service: Service, file_server: FileServer, data_root: Path
) -> None:
    small = Image.open(data_root / QUERY).convert("RGB")
    out = io.BytesIO()
    small.resize((small.width * SCALE, small.height * SCALE), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    large_url = file_server.put("large-milk", out.getvalue())

    expected = box(pic_info(service, file_server.url(QUERY))["mainRegion"]["region"])
    found = pic_info(service, large_url)
    main = box(found["mainRegion"]["region"])
    scaled = Box(expected.x1 * SCALE, expected.x2 * SCALE, expected.y1 * SCALE, expected.y2 * SCALE)
    assert main.iou(scaled) > 0.8, (main, scaled)
    for region in found["multiRegion"]:
        shown = box(region["region"])
        assert 0 <= shown.x1 < shown.x2 <= small.width * SCALE and 0 <= shown.y1 < shown.y2 <= small.height * SCALE

    # a region asked for is searched, and answered, exactly as asked (clipped to the picture)
    asked = pic_info(service, large_url, region="501,2003,607,9000")
    assert asked["mainRegion"]["region"] == f"501,2003,607,{small.height * SCALE}"
    whole = pic_info(service, large_url, crop="false")
    assert whole["mainRegion"]["region"] == f"0,{small.width * SCALE},0,{small.height * SCALE}"

"""A query holding a product picture inside it (a screenshot, a photo of a screen): the
service searches the picture, reports it as the main region, and keeps a query that is
itself a catalog picture as it is."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.conftest import Service, as_records, copy_of_catalog, settings_for
from tests.utils.composites import composites
from tests.utils.data import read_rows
from tests.utils.fileserver import FileServer
from tongkuan.domain.boxes import Box
from tongkuan.engine import Engine
from tongkuan.search.searcher import SearchQuery


def screenshot(data_root: Path) -> tuple[Image.Image, Box, str]:
    """The first scene of a seeded series with a grocery catalog shot pasted into a real
    photo: the image, where the shot is, and its product."""
    scene = next(s for s in composites(data_root, 12, seed=5) if s.subject.parent.name == "iconic")
    classes = read_rows(data_root / "grocery_store" / "classes.csv")
    shown = next(int(r["class_id"]) for r in classes if Path(r["iconic_path"]).name == scene.subject.name)
    return scene.image, scene.box, f"grocery-{shown:03d}"


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


def test_the_picture_inside_a_screenshot_is_searched(
    service: Service, file_server: FileServer, data_root: Path
) -> None:
    image, pasted, product = screenshot(data_root)
    url = file_server.put("screenshot.jpg", jpeg(image))
    data = service.get("/taobao/image-search/url", {"picUrl": url, "pageSize": "3"}).json()["data"]
    x1, x2, y1, y2 = (int(v) for v in data["picInfo"]["mainRegion"]["region"].split(","))
    assert Box(x1, x2, y1, y2).iou(pasted) >= 0.8
    assert data["picInfo"]["multiRegion"][0]["region"] == data["picInfo"]["mainRegion"]["region"]
    assert product in [item["itemId"] for item in data["data"]]  # first in 80 % of such scenes (test_quality)


def test_a_chosen_region_keeps_the_picture_inside_first_among_the_regions(
    service: Service, file_server: FileServer, data_root: Path
) -> None:
    """DAJI lists every subject found, the main one first, whichever region was searched, so
    a shopper who chose another region can go back to the main subject."""
    image, _, _ = screenshot(data_root)
    url = file_server.put("screenshot.jpg", jpeg(image))
    first = service.get("/taobao/image-search/url", {"picUrl": url, "pageSize": "3"}).json()["data"]["picInfo"]
    main = first["multiRegion"][0]["region"]
    assert main == first["mainRegion"]["region"]
    other = next(r["region"] for r in first["multiRegion"][1:])
    params = {"picUrl": url, "pageSize": "3", "region": other}
    chosen = service.get("/taobao/image-search/url", params).json()["data"]["picInfo"]
    assert chosen["mainRegion"]["region"] == other
    assert chosen["multiRegion"] == first["multiRegion"]  # the same subjects, the main one first
    assert all(set(region) == {"region"} for region in chosen["multiRegion"])  # DAJI's shape


def test_a_catalog_picture_queried_is_searched_as_it_is(
    catalog_engine: Engine, data_root: Path, tmp_path: Path
) -> None:
    copy = copy_of_catalog(catalog_engine, tmp_path / "data")
    engine = Engine(settings_for(copy))
    try:
        image, pasted, _ = screenshot(data_root)
        (tmp_path / "shot.jpg").write_bytes(jpeg(image))
        stranger = engine.searcher.search(image, SearchQuery(limit=1))
        assert stranger.searched.iou(pasted) >= 0.8  # not in the catalog: the inset is searched
        record = {
            "itemId": "screenshot-1",
            "title": "a screenshot",
            "reservePrice": "1",
            "images": [tmp_path / "shot.jpg"],
        }
        report = engine.ingester().ingest(as_records([record]))
        assert not report.failures
        itself = engine.searcher.search(image, SearchQuery(limit=1))
        assert itself.hits[0].product.item_id == "screenshot-1" and itself.hits[0].score > 0.99
        assert itself.searched.iou(pasted) < 0.5  # searched as the catalog stored it
        assert max(r.iou(pasted) for r in itself.regions) >= 0.8  # the inset is still among the regions
        chosen = engine.searcher.search(image, SearchQuery(limit=1, region=itself.regions[-1]))
        assert chosen.regions == itself.regions  # a chosen region leaves the subjects and their order
    finally:
        engine.close()


def test_insets_can_be_turned_off(catalog_engine: Engine, data_root: Path, tmp_path: Path) -> None:
    engine = Engine(settings_for(copy_of_catalog(catalog_engine, tmp_path / "data"), find_insets=False))
    try:
        image, pasted, _ = screenshot(data_root)
        assert engine.searcher.search(image, SearchQuery(limit=1)).searched.iou(pasted) < 0.5
    finally:
        engine.close()

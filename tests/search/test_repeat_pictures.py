"""A picture searched again (the next page of the same picUrl, another filter on an upload)
reuses its description instead of running the model again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from tongkuan.domain.boxes import Box
from tongkuan.engine import Engine
from tongkuan.search.searcher import Searcher, SearchQuery
from tongkuan.search.timing import Stage, StageClock

QUERY = "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"


@pytest.fixture
def runs(catalog_engine: Engine) -> Iterator[list[int]]:
    """The pictures of each run of the catalog's model while the test runs."""
    encoder = catalog_engine.vision.encoder
    original = encoder.run
    counted: list[int] = []

    def run(images: list[Image.Image]) -> object:
        counted.append(len(images))
        return original(images)

    encoder.run = run  # type: ignore[method-assign,assignment]
    yield counted
    del encoder.run  # the class's own again


def searcher(engine: Engine, cached_pictures: int) -> Searcher:
    """A searcher over the engine's catalog with a cache of its own (the engine's is shared by
    every test of the session)."""
    shared = engine.searcher
    return Searcher(
        shared.vision, shared.catalog, shared.index, replace(shared.options, cached_pictures=cached_pictures)
    )


def ids(searcher: Searcher, engine: Engine, data: bytes, query: SearchQuery) -> list[str]:
    picture = engine.decode(data)
    return [hit.product.item_id for hit in searcher.search(picture.image, query, key=picture.key).hits]


def test_the_next_pages_of_a_picture_skip_the_model_and_walk_the_same_ranking(
    catalog_engine: Engine, data_root: Path, runs: list[int]
) -> None:
    cached = searcher(catalog_engine, 100)
    data = (data_root / QUERY).read_bytes()
    image = Image.open(data_root / QUERY).convert("RGB")
    fresh = [h.product.item_id for h in catalog_engine.searcher.search(image, SearchQuery(limit=30)).hits]
    runs.clear()
    pages = [ids(cached, catalog_engine, data, SearchQuery(limit=10))]
    first = len(runs)
    assert first >= 1  # the first page described the picture
    pages += [ids(cached, catalog_engine, data, SearchQuery(offset=offset, limit=10)) for offset in (10, 20)]
    assert len(runs) == first  # the next pages did not
    assert [i for page in pages for i in page] == fresh  # the pages of one ranking, as described afresh
    ids(cached, catalog_engine, data, SearchQuery(limit=10, region=Box(0, 200, 0, 200)))
    second = len(runs)
    assert second > first  # another region of it is another description
    ids(cached, catalog_engine, data, SearchQuery(limit=10, region=Box(0, 200, 0, 200)))
    assert len(runs) == second
    ids(cached, catalog_engine, (data_root / QUERY.replace("_001", "_002")).read_bytes(), SearchQuery())
    assert len(runs) > second  # another picture runs the model


def test_the_engine_names_each_picture_it_decodes_by_content(
    catalog_engine: Engine, data_root: Path, runs: list[int]
) -> None:
    data = (data_root / QUERY).read_bytes()
    assert catalog_engine.decode(data).key == catalog_engine.decode(bytes(data)).key
    assert (
        catalog_engine.decode(data).key
        != catalog_engine.decode((data_root / QUERY.replace("_001", "_003")).read_bytes()).key
    )
    region = SearchQuery(limit=5, region=Box(3, 203, 7, 207))  # a region no other test asks for
    catalog_engine.search(catalog_engine.decode(data), region)
    first = len(runs)
    catalog_engine.search(catalog_engine.decode(data), replace(region, offset=5))
    assert first >= 1 and len(runs) == first


def test_without_a_cache_every_search_runs_the_model(catalog_engine: Engine, data_root: Path, runs: list[int]) -> None:
    uncached = searcher(catalog_engine, 0)
    data = (data_root / QUERY).read_bytes()
    for offset in (0, 10):
        ids(uncached, catalog_engine, data, SearchQuery(offset=offset, limit=10))
    assert len(runs) >= 2 and runs[: len(runs) // 2] == runs[len(runs) // 2 :]


def test_a_search_times_the_models_passes_apart_from_the_work_around_them(
    catalog_engine: Engine, data_root: Path, runs: list[int]
) -> None:
    cached = searcher(catalog_engine, 100)
    picture = catalog_engine.decode((data_root / QUERY).read_bytes())
    first, again = StageClock(), StageClock()
    cached.search(picture.image, SearchQuery(), first, key=picture.key)
    passes = len(runs)
    cached.search(picture.image, SearchQuery(), again, key=picture.key)
    assert passes >= 1 and len(runs) == passes  # the second search reused the description
    assert first.seconds[Stage.INFERENCE] > 0 and first.seconds[Stage.QUEUE] >= 0
    assert first.seconds[Stage.VISION] > 0  # resizing, subjects, crops: what is not a pass
    assert Stage.INFERENCE not in again.seconds  # no pass ran

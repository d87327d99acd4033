"""Pages of one query walk one ranking: no product twice, none skipped, whatever the page size."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tongkuan.engine import Engine
from tongkuan.search.searcher import SearchQuery

QUERIES = [
    "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg",
    "grocery_store/images/val/Fruit/Banana/Banana_001.jpg",
]


@pytest.mark.parametrize("query", QUERIES)
def test_pages_concatenate_to_one_ranking(catalog_engine: Engine, data_root: Path, query: str) -> None:
    image = Image.open(data_root / query).convert("RGB")
    whole = [h.product.item_id for h in catalog_engine.searcher.search(image, SearchQuery(limit=80)).hits]
    assert len(whole) == len(set(whole)) == 80
    for size in (10, 20):
        pages = [
            [h.product.item_id for h in catalog_engine.searcher.search(image, SearchQuery(offset=o, limit=size)).hits]
            for o in range(0, 80, size)
        ]
        assert [i for page in pages for i in page] == whole, size

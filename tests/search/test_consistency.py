"""Searches racing with writes see each product whole: its old images or its new ones."""

from __future__ import annotations

import threading
from pathlib import Path

from PIL import Image

from tests.conftest import new_data_dir, settings_for
from tongkuan.domain.products import NewImage, Product
from tongkuan.engine import Engine
from tongkuan.images.decode import content_hash

ICONIC = "grocery_store/iconic"
SET_A = ["Alpro-Fresh-Soy-Milk_Iconic.jpg", "Oatly-Oat-Milk_Iconic.jpg"]
SET_B = ["Banana_Iconic.jpg", "Lemon_Iconic.jpg", "Kiwi_Iconic.jpg"]


def new_images(engine: Engine, root: Path, names: list[str]) -> list[NewImage]:
    paths = [root / ICONIC / n for n in names]
    described = engine.vision.describe([Image.open(p).convert("RGB") for p in paths])
    return [NewImage(content_hash(p.read_bytes()), p.name, d.embedding) for p, d in zip(paths, described, strict=True)]


def test_a_product_rewritten_while_searching_is_never_seen_half_written(
    tmp_path: Path, model_cache: Path, data_root: Path
) -> None:
    engine = Engine(settings_for(new_data_dir(tmp_path / "data", model_cache), model="efficientnet-lite0"))
    images_a, images_b = new_images(engine, data_root, SET_A), new_images(engine, data_root, SET_B)
    hashes_a, hashes_b = {i.content_hash for i in images_a}, {i.content_hash for i in images_b}
    engine.catalog.upsert(Product("neighbour", "other"), images_b[:1])
    product = Product("x", "rewritten")
    engine.catalog.upsert(product, images_a)
    query = images_a[0].vector[None, :]
    done = threading.Event()

    def writer() -> None:
        for round_ in range(60):
            engine.catalog.upsert(product, images_b if round_ % 2 == 0 else images_a)
        done.set()

    seen: list[set[str]] = []
    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set() or len(seen) < 5:
        with engine.searcher.lock, engine.catalog.snapshot():  # exactly what a search does
            engine.vector_index.sync()
            _, ids = engine.vector_index.search(query, engine.vector_index.count())
            found = engine.catalog.hydrate([int(i) for i in ids[0] if i >= 0])
            assert len(found) == len([i for i in ids[0] if i >= 0]), "index holds a vector the snapshot lacks"
        seen.append({image.content_hash for p, image in found.values() if p.item_id == "x"})
    thread.join()
    assert all(s in (hashes_a, hashes_b) for s in seen), [s for s in seen if s not in (hashes_a, hashes_b)][:3]
    engine.vector_index.sync()
    assert engine.vector_index.count() == len(images_a) + 1  # the last round wrote set A
    engine.close()

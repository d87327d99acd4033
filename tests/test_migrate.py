"""`tongkuan migrate`: an embedded data directory moved to PostgreSQL + Milvus without
re-embedding, pictures copied to the shared folder, resumable, and searchable as before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from tests.conftest import new_data_dir, new_database, settings_for
from tests.utils.milvus_server import MilvusServer
from tests.utils.postgres_server import PostgresServer
from tongkuan.adapt.whitening import META_KEY
from tongkuan.catalog.postgres import PostgresCatalog
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.cli import main
from tongkuan.domain.products import ProductFilter, SortOrder
from tongkuan.engine import Engine
from tongkuan.images.decode import decode_image
from tongkuan.search.searcher import SearchQuery
from tongkuan.vision.whitening import Whitening

MODEL = "efficientnet-lite0"
NAMES = ["Arla-Standard-Milk", "Banana", "Bravo-Apple-Juice", "Granny-Smith", "Red-Bell-Pepper"]


def test_an_embedded_catalog_moves_without_reembedding(
    data_root: Path, postgres: PostgresServer, milvus: MilvusServer, model_cache: Path, tmp_path: Path
) -> None:
    source = new_data_dir(tmp_path / "embedded", model_cache)
    folder = tmp_path / "pictures"
    folder.mkdir()
    records = []
    for i, name in enumerate(NAMES):
        shutil.copy(data_root / "grocery_store" / "iconic" / f"{name}_Iconic.jpg", folder / f"{name}.jpg")
        records.append({"itemId": f"g{i}", "title": name, "reservePrice": "1.50", "images": [f"{name}.jpg"]})
    (folder / "items.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    runner = CliRunner()
    ingested = runner.invoke(main, ["ingest", str(folder / "items.jsonl"), "--data-dir", str(source), "--model", MODEL])
    assert ingested.exit_code == 0, ingested.output

    # a whitening stored with the catalog moves with it, so both search in the same space
    projection = np.random.default_rng(0).standard_normal((1280, 64)).astype(np.float32)
    whitening = Whitening(np.zeros(1280, np.float32), projection, MODEL, products=0, pictures=0, shrinkage=0.1)
    SqliteCatalog(source / "catalog.db", MODEL, 1280).set_learned(META_KEY, whitening.to_text())

    # the words read on pictures move too: reading them again would cost far more than copying
    embedded_catalog = SqliteCatalog(source / "catalog.db", MODEL, 1280)
    arla, bravo = (embedded_catalog.images_of(item_id)[0].vector_id for item_id in ("g0", "g2"))
    embedded_catalog.set_picture_words([(arla, "Arla Ekologisk Mjölk 1,5L"), (bravo, "")])
    embedded_catalog.close()

    url = new_database(postgres)
    vectors = f"milvus://127.0.0.1:{milvus.port}/moved"
    shared = tmp_path / "shared-pictures"
    args = ["migrate", "--from", str(source), "--to", url, "--vectors", vectors, "--images", str(shared)]
    moved = runner.invoke(main, args)
    assert moved.exit_code == 0, moved.output
    assert f"moved {len(NAMES)} products (0 already there), {len(NAMES)} pictures, {len(NAMES)} files" in moved.output
    again = runner.invoke(main, args)  # resumable: nothing left to do
    assert f"moved 0 products ({len(NAMES)} already there)" in again.output

    embedded = Engine(settings_for(source))
    server = Engine(
        settings_for(
            new_data_dir(tmp_path / "replica", model_cache),
            catalog_url=url,
            vectors_url=vectors,
            image_dir=shared,
            model=MODEL,
        )
    )
    target = server.catalog
    assert (
        server.vector_index.space.key == embedded.vector_index.space.key == whitening.key
        and server.vector_index.space.dim == 64
    )
    assert isinstance(target, PostgresCatalog) and target.count() == embedded.catalog.count()
    ids = [f"g{i}" for i in range(len(NAMES))]
    theirs = embedded.catalog.pictures_with_vectors(ids)
    for item_id, (pictures, ours) in target.pictures_with_vectors(ids).items():
        assert np.array_equal(ours, theirs[item_id][1])  # the stored vectors, bit for bit
        assert target.get(item_id) == embedded.catalog.get(item_id)
        assert all((shared / p.location).is_file() for p in pictures)
    query = decode_image((data_root / "grocery_store" / "iconic" / "Banana_Iconic.jpg").read_bytes(), 10**8)
    both = [
        [(h.product.item_id, round(h.score, 4)) for h in e.searcher.search(query, SearchQuery(limit=5)).hits]
        for e in (embedded, server)
    ]
    assert both[0] == both[1] and both[0][0][0] == "g1"
    assert (
        target.picture_words(ids)
        == embedded.catalog.picture_words(ids)
        == {
            "g0": {"Arla-Standard-Milk.jpg": "Arla Ekologisk Mjölk 1,5L"},
            "g2": {"Bravo-Apple-Juice.jpg": ""},
        }
    )
    assert target.reading_counts() == embedded.catalog.reading_counts() == (2, 1)
    found, _ = server.keyword_page("ekologisk", SortOrder.RELEVANCE, ProductFilter(), 0, 10)
    assert [p.item_id for p in found] == ["g0"]  # a word only its picture says
    embedded.close()
    server.close()

"""Quality bars on real photos: same product, category, subject region.

Same product: the 296 grocery val photos, through real HTTP, against the catalog of
iconic + train photos (81 products). Bars: rank 1 >= 60 %, top 5 >= 85 %.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from tests.conftest import Service, copy_of_catalog, settings_for
from tests.utils.composites import composites
from tests.utils.data import read_rows
from tests.utils.fileserver import FileServer
from tongkuan.cli import main
from tongkuan.domain.categories import CATEGORY_BY_NAME
from tongkuan.engine import Engine
from tongkuan.images.decode import decode_image
from tongkuan.search.searcher import SearchQuery

# Bars set a little under what the default model measured here (see docs/benchmarks.md).
BAR_CATEGORY = 0.55
BAR_MAIN_REGION = 0.75  # measured 0.845 on the benchmark's scenes (seed 7; the activation map alone: 0.005)
BAR_PASTED_PRODUCT = 0.65  # measured 0.805 (without looking for insets: 0.083)
BAR_WHITENED_TOP1 = 0.70


def test_grocery_photos_find_the_same_product(service: Service, file_server: FileServer, data_root: Path) -> None:
    rows = [r for r in read_rows(data_root / "grocery_store" / "labels.csv") if r["split"] == "val"]
    assert len(rows) == 296
    top1 = top5 = 0
    for row in rows:
        body = service.get(
            "/taobao/image-search/url",
            {"picUrl": file_server.url(f"grocery_store/{row['path']}"), "pageSize": "5"},
        ).json()
        ids = [item["itemId"] for item in body["data"]["data"]]
        wanted = f"grocery-{int(row['class_id']):03d}"
        top1 += ids[0] == wanted
        top5 += wanted in ids
    print(f"same product: R@1 {top1 / len(rows):.3f}, R@5 {top5 / len(rows):.3f}")
    assert top1 / len(rows) >= 0.60
    assert top5 / len(rows) >= 0.85


def clothing_sample(data_root: Path, step: int = 10) -> list[tuple[Path, str]]:
    rows = read_rows(data_root / "clothing_dataset" / "labels.csv")
    labelled = [r for r in rows if r["service_category"]]
    return [(data_root / "clothing_dataset" / r["path"], r["service_category"]) for r in labelled[::step]]


def test_categories_of_clothing_photos_beat_the_classifier_alone(catalog_engine: Engine, data_root: Path) -> None:
    """Top-1 over the 14 categories on 205 user photos of clothes (every 10th labelled one)."""
    fused = prior_only = 0
    sample = clothing_sample(data_root)
    for path, name in sample:
        image = decode_image(path.read_bytes(), 40_000_000)
        results = catalog_engine.searcher.search(image, SearchQuery(limit=1))
        expected = CATEGORY_BY_NAME[name]
        fused += results.categories[0].category == expected
        described = catalog_engine.vision.describe([image])[0]
        prior_only += int(np.argmax(described.prior)) == list(CATEGORY_BY_NAME.values()).index(expected)
    fused_rate, prior_rate = fused / len(sample), prior_only / len(sample)
    print(f"clothing category top-1: fused {fused_rate:.3f}, classifier alone {prior_rate:.3f}")
    assert fused_rate >= BAR_CATEGORY
    assert fused_rate > prior_rate


def test_products_pasted_into_real_scenes_are_found_and_searched(catalog_engine: Engine, data_root: Path) -> None:
    """Catalog shots pasted at known boxes into shelf and clothing photos (seeded): the region
    the service searches (mainRegion.region) and, for grocery shots, the product it finds."""
    iconic = {
        data_root / "grocery_store" / r["path"]: f"grocery-{int(r['class_id']):03d}"
        for r in read_rows(data_root / "grocery_store" / "labels.csv")
        if r["split"] == "catalog"
    }
    main_iou, best_iou, found = [], [], []
    for scene in composites(data_root, 120, seed=11):
        results = catalog_engine.searcher.search(scene.image, SearchQuery(limit=1))
        main_iou.append(results.searched.iou(scene.box))
        best_iou.append(max(r.iou(scene.box) for r in results.regions))
        if scene.subject in iconic:
            found.append(results.hits[0].product.item_id == iconic[scene.subject])
    main, best = np.array(main_iou), np.array(best_iou)
    print(
        f"pasted shots: main region IoU>=0.5 {np.mean(main >= 0.5):.3f}, best region {np.mean(best >= 0.5):.3f}, "
        f"grocery product first {np.mean(found):.3f} of {len(found)}"
    )
    assert np.mean(main >= 0.5) >= BAR_MAIN_REGION
    assert np.mean(found) >= BAR_PASTED_PRODUCT


def grocery_rates(engine: Engine, rows: list[dict[str, str]], data_root: Path) -> tuple[float, float]:
    top1 = top5 = 0
    for row in rows:
        image = decode_image((data_root / "grocery_store" / row["path"]).read_bytes(), 40_000_000)
        ids = [hit.product.item_id for hit in engine.searcher.search(image, SearchQuery(limit=5)).hits]
        wanted = f"grocery-{int(row['class_id']):03d}"
        top1 += ids[0] == wanted
        top5 += wanted in ids
    return top1 / len(rows), top5 / len(rows)


def test_a_whitening_learned_from_the_catalog_finds_more_of_the_same_products(
    catalog_engine: Engine, data_root: Path, tmp_path: Path
) -> None:
    """`tongkuan whiten` on a copy of the test catalog, then the same photos searched in both."""
    copy = copy_of_catalog(catalog_engine, tmp_path / "data")
    result = CliRunner().invoke(main, ["whiten", "--data-dir", str(copy)])
    assert result.exit_code == 0, result.output
    assert (
        "1280 -> 256 dimensions from 81 products" in result.output
    )  # the grocery products; fashion shots have one picture
    whitened = Engine(settings_for(copy))
    try:
        assert whitened.vector_index.space.key and whitened.vector_index.count() == catalog_engine.vector_index.count()
        assert (
            copy / "index" / f"{whitened.vision.spec.name}-{whitened.vector_index.space.key}"
        ).is_dir()  # built by whiten
        rows = [r for r in read_rows(data_root / "grocery_store" / "labels.csv") if r["split"] == "val"]
        base1, base5 = grocery_rates(catalog_engine, rows, data_root)
        top1, top5 = grocery_rates(whitened, rows, data_root)
        category = sum(
            whitened.searcher.search(decode_image(path.read_bytes(), 40_000_000), SearchQuery(limit=1))
            .categories[0]
            .category
            == CATEGORY_BY_NAME[name]
            for path, name in clothing_sample(data_root)
        ) / len(clothing_sample(data_root))
    finally:
        whitened.close()
    print(
        f"same product R@1 {base1:.3f} -> {top1:.3f}, R@5 {base5:.3f} -> {top5:.3f}; clothing category {category:.3f}"
    )
    assert top1 >= BAR_WHITENED_TOP1 and top1 >= base1 + 0.05
    assert top5 >= 0.93
    assert category >= BAR_CATEGORY  # the fashion shots' neighbours still vote well in the learned space

    result = CliRunner().invoke(main, ["whiten", "--data-dir", str(copy), "--remove"])
    assert result.exit_code == 0, result.output
    plain = Engine(settings_for(copy))
    try:
        assert plain.vector_index.space.key == "" and plain.vector_index.space.dim == 1280
    finally:
        plain.close()


def test_whiten_explains_a_catalog_it_cannot_learn_from(tmp_path: Path) -> None:
    empty = CliRunner().invoke(main, ["whiten", "--data-dir", str(tmp_path / "none")])
    assert empty.exit_code != 0 and "holds no catalog yet" in empty.output


def test_a_catalog_picture_finds_its_own_product_first(catalog_engine: Engine, data_root: Path) -> None:
    """Each grocery product's studio shot, queried, names its product, however unlike the
    shot its other pictures (shoppers' photos) are: a near-duplicate outranks the mean of
    another product's best pictures."""
    rows = [r for r in read_rows(data_root / "grocery_store" / "labels.csv") if r["split"] == "catalog"]
    for row in rows:
        image = decode_image((data_root / "grocery_store" / row["path"]).read_bytes(), 40_000_000)
        hit = catalog_engine.searcher.search(image, SearchQuery(limit=1)).hits[0]
        assert hit.product.item_id == f"grocery-{int(row['class_id']):03d}" and hit.score > 0.99, row["path"]

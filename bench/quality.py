"""Search quality on real photos, each figure next to a baseline measured in the same run.

    python bench/quality.py [--data ../shared/data] [--model efficientnet-lite2] [--limit N]

Works on any folder laid out like shared/data. The last line printed is a JSON summary.
- same product: grocery val photos -> catalog of iconic + train photos (relevant = same
  class_id), Recall@1/5/10 over distinct products and mAP over the image ranking; and
  photos -> the 81 iconic images alone, Recall@1/5. Baseline: whole image, no crop. Each
  also with the learned whitening (`tongkuan whiten`) learned from that catalog.
- category: top-1 and confusion matrix over the 14 categories on clothing photos and on
  fashion shots. Fused (classifier + vote of the 30 nearest catalog shots) against the
  classifier alone. The voting catalog is fashion shots disjoint from the queries.
- listings: every train photo a single-picture listing of its own (a SKU listed many
  times) and the iconic shots alone (every product different), R@1/5 over listings, with
  and without the whitening learned from near-duplicate pairs; baseline: whole image.
- small pictures: val photos and a catalog of five train photos per product, all shrunk to
  120 px; the service's small-picture rule against cropping always, the whole picture, and
  the naive stack (Lite0, whole picture, nearest picture).
- subject detection: catalog shots pasted at known boxes into real shelf and clothing
  photos (seeded). Mean IoU of the main region as queries get it (a picture found inside
  the picture, else the activation map's subject), share with IoU >= 0.5, best of
  multiRegion; against the activation map alone and the whole image. Also how often real
  photos with no picture inside are taken for one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.bench import (
    CATEGORIES,
    CATEGORY_BY_NAME,
    CATEGORY_POSITION,
    CONTEXT_WEIGHT,
    PAIR_COSINE,
    PAIR_NEIGHBOURS,
    Box,
    Description,
    ModelSpace,
    OnnxEncoder,
    PoolingVision,
    Vision,
    composites,
    crop_share,
    duplicated_share,
    find_inset,
    fuse,
    learn_whitening,
    listings_whitening,
    model_spec,
    mutual_pairs,
    neighbour_vote,
    read_rows,
    resolve_model,
    subject_finder,
)

REPO = Path(__file__).resolve().parent.parent
BATCH = 16


def describe(vision: Vision, paths: list[Path], crop: bool, insets: bool = False) -> list[Description]:
    """As the service describes catalog pictures (`insets` False) or queries (True)."""
    out: list[Description] = []
    for start in range(0, len(paths), BATCH):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + BATCH]]
        out += vision.describe(images, crop=crop, insets=insets)
    return out


def matrix(descriptions: list[Description]) -> NDArray[np.float32]:
    """Embeddings as searched: a query's inset's where one was found (the queries here are
    not catalog pictures themselves, so the searcher would choose it)."""
    return np.stack([(d.inset or d).embedding for d in descriptions]).astype(np.float32)


def retrieval(
    queries: NDArray[np.float32],
    q_labels: NDArray[np.int64],
    catalog: NDArray[np.float32],
    c_labels: NDArray[np.int64],
    per_product: int = 3,
) -> dict[str, float]:
    """Recall@k over products ranked as the service ranks them (mean of each product's best
    `per_product` picture similarities), and mAP over the picture ranking."""
    scores = queries @ catalog.T
    products = np.unique(c_labels)
    members = [np.flatnonzero(c_labels == p) for p in products]
    hits = {1: 0, 5: 0, 10: 0}
    average_precisions = []
    for i in range(len(queries)):
        product_scores = np.array([np.sort(scores[i, m])[-per_product:].mean() for m in members])
        ranked_products = products[np.argsort(-product_scores)]
        for k in hits:
            hits[k] += int(q_labels[i] in ranked_products[:k])
        relevant = c_labels[np.argsort(-scores[i])] == q_labels[i]
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        average_precisions.append(float((precision * relevant).sum() / max(1, relevant.sum())))
    n = len(queries)
    return {f"R@{k}": round(v / n, 4) for k, v in hits.items()} | {"mAP": round(float(np.mean(average_precisions)), 4)}


def unseen_products(
    model: str,
    queries: NDArray[np.float32],
    q_labels: NDArray[np.int64],
    catalog: NDArray[np.float32],
    c_labels: NDArray[np.int64],
    splits: int = 3,
) -> dict[str, float]:
    """Products added after the whitening was learned: learned on a random half of the
    products, measured on the other half (and the other way round), `splits` times."""
    products = np.unique(c_labels)
    before, after = [], []
    for seed in range(splits):
        half = np.random.default_rng(seed).permutation(products)[: len(products) // 2]
        for learned_on in (np.isin(c_labels, half), ~np.isin(c_labels, half)):
            measured = ~learned_on
            asked = np.isin(q_labels, c_labels[measured])
            if not asked.any():  # a smoke run's few queries
                continue
            whitening = learn_whitening(catalog[learned_on], c_labels[learned_on], model)
            before.append(retrieval(queries[asked], q_labels[asked], catalog[measured], c_labels[measured])["R@1"])
            after.append(
                retrieval(whitening(queries[asked]), q_labels[asked], whitening(catalog[measured]), c_labels[measured])[
                    "R@1"
                ]
            )
    if not before:
        return {}
    return {"R@1 without": round(float(np.mean(before)), 4), "R@1 with": round(float(np.mean(after)), 4)}


def same_product(vision: Vision, root: Path, limit: int | None) -> dict[str, object]:
    rows = read_rows(root / "grocery_store" / "labels.csv")
    catalog_rows = [r for r in rows if r["split"] in ("train", "catalog")][:: 1 if limit is None else 10]
    iconic_rows = [r for r in rows if r["split"] == "catalog"]
    val_rows = [r for r in rows if r["split"] == "val"][:limit]

    def paths(rs: list[dict[str, str]]) -> list[Path]:
        return [root / "grocery_store" / r["path"] for r in rs]

    def labels(rs: list[dict[str, str]]) -> NDArray[np.int64]:
        return np.array([int(r["class_id"]) for r in rs])

    result: dict[str, object] = {"queries": len(val_rows), "catalog_images": len(catalog_rows)}
    for name, crop in (("crop (default)", True), ("whole image (baseline)", False)):
        started = time.perf_counter()
        catalog = matrix(describe(vision, paths(catalog_rows), crop))
        per_image = (time.perf_counter() - started) / len(catalog_rows)
        queries = matrix(describe(vision, paths(val_rows), crop, insets=crop))
        iconic = matrix(describe(vision, paths(iconic_rows), crop))
        # the whitening `tongkuan whiten` learns from this catalog's products with several pictures
        whitening = learn_whitening(catalog, labels(catalog_rows), vision.spec.name)
        if crop:
            result["learned whitening on products it was not learned from"] = unseen_products(
                vision.spec.name, queries, labels(val_rows), catalog, labels(catalog_rows)
            )
        for space, label in ((ModelSpace(vision.dim), ""), (whitening, " + learned whitening")):
            result[name + label] = {
                "photo->catalog": retrieval(space(queries), labels(val_rows), space(catalog), labels(catalog_rows)),
                "photo->iconic": {
                    k: v
                    for k, v in retrieval(space(queries), labels(val_rows), space(iconic), labels(iconic_rows)).items()
                    if k in ("R@1", "R@5")
                },
                "ms_per_catalog_image": round(per_image * 1000, 1),
            }
    return result


def listing_recall(
    queries: NDArray[np.float32], q_labels: NDArray[np.int64], catalog: NDArray[np.float32], c_labels: NDArray[np.int64]
) -> dict[str, float]:
    """R@1/R@5 where every catalog picture is a listing of its own: a hit is a listing of
    the query's product among the top k."""
    top = np.argsort(-(queries @ catalog.T), axis=1)[:, :5]
    hits = c_labels[top] == q_labels[:, None]
    return {"R@1": round(float(hits[:, 0].mean()), 4), "R@5": round(float(hits.any(axis=1).mean()), 4)}


def listings(vision: Vision, root: Path, limit: int | None) -> dict[str, object]:
    """Catalogs of single-picture listings: every train photo a listing of its own (a SKU
    listed many times), and the iconic shots alone (every product different), each in the
    model's space and with the whitening `tongkuan whiten` learns from near-duplicate pairs
    ("auto": only where most listings have one; "on": always, to show what it costs where
    the products differ)."""
    rows = read_rows(root / "grocery_store" / "labels.csv")
    val_rows = [r for r in rows if r["split"] == "val"][:limit]
    q_labels = np.array([int(r["class_id"]) for r in val_rows])
    modes = (("crop (default)", True), ("whole image (baseline)", False))
    asked = {  # the queries, described once per mode for both catalogs
        name: matrix(describe(vision, [root / "grocery_store" / r["path"] for r in val_rows], crop, insets=crop))
        for name, crop in modes
    }
    out: dict[str, object] = {}
    for shape, split in (("listings (one listing per train photo)", "train"), ("studio shots only", "catalog")):
        shape_rows = [r for r in rows if r["split"] == split][:: 1 if limit is None or split == "catalog" else 10]
        c_labels = np.array([int(r["class_id"]) for r in shape_rows])
        measured: dict[str, object] = {"listings": len(shape_rows)}
        for name, crop in modes:
            catalog = matrix(describe(vision, [root / "grocery_store" / r["path"] for r in shape_rows], crop))
            queries = asked[name]
            measured[name] = listing_recall(queries, q_labels, catalog, c_labels)
            pairs, cosine = mutual_pairs(catalog, PAIR_NEIGHBOURS, PAIR_COSINE)
            measured[name + " near-duplicate share"] = round(duplicated_share(pairs, cosine, len(catalog)), 3)
            for mode in ("auto", "on"):
                whitening = listings_whitening(catalog, vision.spec.name, mode)
                if whitening is None:
                    measured[f"{name} + whitening from pairs ({mode})"] = "not learned"
                    continue
                measured[f"{name} + whitening from pairs ({mode})"] = listing_recall(
                    whitening(queries), q_labels, whitening(catalog), c_labels
                ) | {"pairs": whitening.pairs}
        out[shape] = measured
    return out


def small_pictures(vision: Vision, root: Path, limit: int | None, cache: Path) -> dict[str, object]:
    """Low-resolution pictures: grocery val photos shrunk to 120 px against a catalog of five
    train photos per product, shrunk alike (small in-store crops). The service's rule (crop
    only a subject at least half the model's input) against cropping always and the whole
    picture, and the naive stack (Lite0, whole picture, nearest picture) in the same run."""
    rows = read_rows(root / "grocery_store" / "labels.csv")
    by_class: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["split"] == "train":
            by_class.setdefault(r["class_id"], []).append(r)
    catalog_rows = [r for rs in by_class.values() for r in rs[:: max(1, len(rs) // 5)][:5]]
    val_rows = [r for r in rows if r["split"] == "val"][:limit]

    def shrunk(rs: list[dict[str, str]]) -> list[Image.Image]:
        return [Image.open(root / "grocery_store" / r["path"]).convert("RGB").resize((120, 120)) for r in rs]

    def labels(rs: list[dict[str, str]]) -> NDArray[np.int64]:
        return np.array([int(r["class_id"]) for r in rs])

    catalog_images, queries = shrunk(catalog_rows), shrunk(val_rows)

    def run(model: Vision, crop: bool, per_product: int = 3) -> dict[str, float]:
        def embed(images: list[Image.Image], insets: bool) -> NDArray[np.float32]:
            described = []
            for start in range(0, len(images), BATCH):
                described += model.describe(images[start : start + BATCH], crop=crop, insets=insets and crop)
            return matrix(described)

        found = retrieval(
            embed(queries, True), labels(val_rows), embed(catalog_images, False), labels(catalog_rows), per_product
        )
        return {k: v for k, v in found.items() if k in ("R@1", "R@5")}

    result: dict[str, object] = {"queries": len(val_rows), "catalog_images": len(catalog_rows)}
    result["service (default: crop only a subject >= half the input)"] = run(vision, True)
    with crop_share(0.0):
        result["crop always (before)"] = run(vision, True)
    result["whole picture"] = run(vision, False)
    naive = Vision(OnnxEncoder(resolve_model("efficientnet-lite0", cache)))
    result["naive: Lite0, whole picture, nearest picture"] = run(naive, False, per_product=1)
    return result


def category(vision: Vision, root: Path, limit: int | None) -> dict[str, object]:
    fashion = read_rows(root / "fashion_product_images_small" / "labels.csv")
    fashion = [r for r in fashion if r["service_category"] in CATEGORY_BY_NAME]
    voters = fashion[1::12][: 60 if limit else None]  # the voting catalog
    fashion_queries = fashion[::12][: limit or 600]
    clothing = read_rows(root / "clothing_dataset" / "labels.csv")
    clothing = [r for r in clothing if r["service_category"] in CATEGORY_BY_NAME][:: 1 if limit else 2][:limit]
    voter_desc = describe(vision, [root / "fashion_product_images_small" / r["path"] for r in voters], True)
    voter_vecs = matrix(voter_desc)
    voter_cats = [CATEGORY_BY_NAME[r["service_category"]] for r in voters]
    result: dict[str, object] = {"voting_catalog": len(voters)}
    for name, folder, rows in (
        ("clothing photos", "clothing_dataset", clothing),
        ("fashion shots", "fashion_product_images_small", fashion_queries),
    ):
        described = describe(vision, [root / folder / r["path"] for r in rows], True)
        truth = [CATEGORY_POSITION[CATEGORY_BY_NAME[r["service_category"]]] for r in rows]
        fused_pred, prior_pred = [], []
        for d in described:
            sims = voter_vecs @ d.embedding
            nearest = np.argsort(-sims)[:30]
            vote = neighbour_vote((voter_cats[i], float(sims[i])) for i in nearest)
            fused_pred.append(int(np.argmax(fuse(d.prior, vote, 0.35))))
            prior_pred.append(int(np.argmax(d.prior)))
        confusion = np.zeros((len(CATEGORIES), len(CATEGORIES)), dtype=int)
        for t, p in zip(truth, fused_pred, strict=True):
            confusion[t, p] += 1
        result[name] = {
            "n": len(rows),
            "top1 fused (default)": round(float(np.mean(np.array(fused_pred) == truth)), 4),
            "top1 classifier alone (baseline)": round(float(np.mean(np.array(prior_pred) == truth)), 4),
            "confusion (truth -> predicted: count)": {
                str(int(CATEGORIES[t])): {str(int(CATEGORIES[p])): int(n) for p, n in enumerate(row) if n}
                for t, row in enumerate(confusion)
                if row.sum()
            },
        }
    return result


def detection(vision: Vision, root: Path, limit: int | None) -> dict[str, object]:
    scenes = composites(root, limit or 200, seed=7)
    main, activation, best, whole = [], [], [], []
    for start in range(0, len(scenes), BATCH):
        batch = scenes[start : start + BATCH]
        images = [s.image for s in batch]
        described = zip(vision.describe(images, insets=True), vision.describe(images), strict=True)
        for scene, (d, plain) in zip(batch, described, strict=True):
            served = d.inset or d  # as the searcher serves a query that is not a catalog picture itself
            main.append(served.regions[0].iou(scene.box))
            activation.append(plain.regions[0].iou(scene.box))
            best.append(max(r.iou(scene.box) for r in served.regions))
            whole.append(Box(0, scene.image.width, 0, scene.image.height).iou(scene.box))
    # how often photos with no picture inside them are taken for one (the service then
    # searches a part of the photo)
    grocery = [r for r in read_rows(root / "grocery_store" / "labels.csv") if r["split"] == "val"]
    clothing = read_rows(root / "clothing_dataset" / "labels.csv")[::10]
    photos = [root / "grocery_store" / r["path"] for r in grocery][:limit] + [
        root / "clothing_dataset" / r["path"] for r in clothing
    ][:limit]
    started = time.perf_counter()
    false_insets = sum(find_inset(Image.open(p).convert("RGB")) is not None for p in photos)
    inset_ms = (time.perf_counter() - started) / len(photos) * 1000

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "mean IoU": round(float(np.mean(values)), 4),
            "IoU>=0.5": round(float(np.mean(np.array(values) >= 0.5)), 4),
        }

    return {
        "scenes": len(scenes),
        "main region (default: insets, then activation map)": stats(main),
        "main region, activation map only": stats(activation),
        "best of multiRegion": stats(best),
        "whole image (baseline)": stats(whole),
        "photos without an inset taken for one": round(false_insets / len(photos), 4),
        "photos checked": len(photos),
        "inset search ms per photo": round(inset_ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--model-cache", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-bench")
    parser.add_argument("--limit", type=int, default=None, help="Queries per benchmark (a smoke run).")
    parser.add_argument(
        "--pool-above",
        type=float,
        default=None,
        help="Embed a subject covering at least this share of the picture by pooling the whole picture's "
        "feature map in its box (one inference); 0: every subject. Default: crop and run again.",
    )
    parser.add_argument(
        "--context",
        type=float,
        default=CONTEXT_WEIGHT,
        help="Share of the whole picture's embedding in a cropped subject's (0: the crop alone).",
    )
    parser.add_argument("--only", default=None, help="Comma-separated tables to run (default: all).")
    args = parser.parse_args()
    # a shipped model, a model imported or pulled into the --model-cache data directory
    # (tongkuan models pull ... --data-dir DIR), or a model.json
    spec = model_spec(args.model, args.model_cache)
    vision = PoolingVision(
        OnnxEncoder(spec), pool_above=args.pool_above, context=args.context,
        finder=subject_finder(spec, args.model_cache),
    )  # fmt: skip
    started = time.perf_counter()
    summary: dict[str, object] = {"model": args.model, "pool_above": args.pool_above, "context": args.context}
    benches: list[tuple[str, Callable[[Vision, Path, int | None], dict[str, object]]]] = [
        ("same_product", same_product),
        ("listings", listings),
        ("small_pictures", lambda v, root, limit: small_pictures(v, root, limit, args.model_cache)),
        ("category", category),
        ("detection", detection),
    ]
    for name, bench in benches:
        if args.only and name not in args.only.split(","):
            continue
        summary[name] = bench(vision, args.data, args.limit)
        print(f"{name}: {json.dumps(summary[name], ensure_ascii=False)}", file=sys.stderr)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, ensure_ascii=False))


if __name__ == "__main__":
    main()

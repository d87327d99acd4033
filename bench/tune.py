"""Catalog adaptation (`tongkuan.adapt.training.tune`) on the grocery photos, per catalog shape.

    python bench/tune.py [--data ../shared/data] [--shapes retailer,lowres,studio,listings]
                         [--model efficientnet-lite0] [--classes N] [--epochs 8] [--views 2]
                         [--per-product 0 (all)] [--backgrounds 200] [--threads 1] [...]

Catalog shapes built from grocery_store:
- retailer: one product per class holding its iconic shot and its train photos;
- listings: one listing per train photo and NO group key (supervision: pseudo-groups and
  augmented views only);
- studio: the iconic shots alone, one per product;
- lowres: the retailer catalog searched with val photos shrunk to ~120 px (the retailer's
  tuned model; nothing is trained for it).
And two catalogs whose records carry categories, for the category head: shoppers' clothing
photos (every other one, the same 1,021 bench/quality.py asks) predicted as the service does
(the model's prior fused with the vote of the 30 nearest catalog pictures) against
- clothing: the other half of the clothing photos, each a product with its category;
- fashion: bench/quality.py's voting catalog of 919 fashion catalog shots.
The model is tuned on the products of a seeded half of the classes (`--tune-share`) (at most `--per-product`
pictures each) and measured on all val photos against the whole catalog, ranked by product
(a product scores its best picture), split into classes tuned on and not tuned on, before
(the frozen whole-picture model, the naive baseline, measured in the same run) and after.
Embeddings go through the exported ONNX models, as the service would run them.
The last line printed is a JSON summary. The retailer shape also reports the learned whitening
learned on top of the tuned features (from the catalog's pictures grouped by product).
Measured runs, with their exact commands: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from tongkuan.bench import (
    CATEGORIES,
    CATEGORY_BY_NAME,
    CATEGORY_POSITION,
    LISTINGS,
    ModelSpec,
    OnnxEncoder,
    Recipe,
    TunedNet,
    TuneResult,
    Vision,
    examples_from_files,
    export_error,
    export_tuned_model,
    fuse,
    learn_whitening,
    listings_whitening,
    load_tunable,
    neighbour_vote,
    purity,
    read_rows,
    tune,
    worth_switching,
)

REPO = Path(__file__).resolve().parent.parent
Rows = list[dict[str, str]]
LOWRES = 120


def embed(encoder: OnnxEncoder, images: list[Path] | list[Image.Image], batch: int = 32) -> NDArray[np.float32]:
    out = []
    for start in range(0, len(images), batch):
        chunk = [
            i if isinstance(i, Image.Image) else Image.open(i).convert("RGB") for i in images[start : start + batch]
        ]
        out.append(encoder.run(chunk).embeddings)
    return np.concatenate(out)


def onnx_encoder(model: TunedNet, work: Path, name: str, threads: int) -> OnnxEncoder:
    out = export_tuned_model(model, work / name, name)
    return OnnxEncoder(ModelSpec.from_json(out / "model.json"), threads=threads)


def recall(
    queries: NDArray[np.float32], q_labels: NDArray[np.int64], gallery: NDArray[np.float32],
    g_products: NDArray[np.int64], g_labels: NDArray[np.int64],
) -> dict[str, float]:  # fmt: skip
    """R@1/R@5 over products: a product scores its best picture; a hit is a product of the
    query's class among the top k."""
    scores = queries @ gallery.T
    products, first = np.unique(g_products, return_index=True)
    product_label = g_labels[first]
    best = np.full((len(queries), len(products)), -np.inf, dtype=np.float32)
    position = np.searchsorted(products, g_products)
    np.maximum.at(best.T, position, scores.T)
    top = np.argsort(-best, axis=1)[:, :5]
    hits = product_label[top] == q_labels[:, None]
    return {"R@1": round(float(hits[:, 0].mean()), 4), "R@5": round(float(hits.any(axis=1).mean()), 4)}


def split_recall(
    queries: NDArray[np.float32], q_labels: NDArray[np.int64], tuned: NDArray[np.bool_],
    gallery: NDArray[np.float32], g_products: NDArray[np.int64], g_labels: NDArray[np.int64],
) -> dict[str, dict[str, float]]:  # fmt: skip
    return {
        name: recall(queries[mask], q_labels[mask], gallery, g_products, g_labels)
        for name, mask in (("all", np.ones_like(tuned)), ("tuned on", tuned), ("not tuned on", ~tuned))
        if mask.any()
    }


def shrink(path: Path, longest: int = LOWRES) -> Image.Image:
    image = Image.open(path).convert("RGB")
    factor = longest / max(image.size)
    return image.resize(
        (max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.BILINEAR
    )


def clothing_backgrounds(data: Path, count: int) -> list[Image.Image]:
    """`count` clothing photos (an even sample) as scenes to paste products onto: real
    backgrounds that share nothing with the grocery products measured."""
    if not count:
        return []
    root = data / "clothing_dataset"
    rows = read_rows(root / "labels.csv")
    step = max(1, len(rows) // count)
    out: list[Image.Image] = []
    for row in rows[::step][:count]:
        with Image.open(root / row["path"]) as opened:
            scene = opened.convert("RGB")
        scene.thumbnail((320, 320))
        out.append(scene)
    return out


PRIOR_WEIGHTS = (0.0, 0.35, 0.5, 0.7, 1.0)  # 0.35: the service's default (TONGKUAN_CATEGORY_PRIOR_WEIGHT)


def describe(vision: Vision, paths: list[Path], batch: int = 16) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """The service's (embeddings, category priors) of pictures: subject crop, inset search."""
    vectors, priors = [], []
    for start in range(0, len(paths), batch):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + batch]]
        for d in vision.describe(images, insets=True):
            chosen = d.inset or d
            vectors.append(chosen.embedding)
            priors.append(chosen.prior)
    return np.stack(vectors), np.stack(priors)


def category_top1(
    queries: tuple[NDArray[np.float32], NDArray[np.float32]], truth: NDArray[np.int64],
    catalog: NDArray[np.float32], catalog_categories: list[int],
) -> dict[str, float]:  # fmt: skip
    """Top-1 of the service's fusion at each prior weight (0: the vote alone, 1: the prior alone)."""
    vectors, priors = queries
    sims = vectors @ catalog.T
    nearest = np.argsort(-sims, axis=1)[:, :30]
    out = {}
    for weight in PRIOR_WEIGHTS:
        predicted = []
        for q in range(len(vectors)):
            vote = neighbour_vote((CATEGORIES[catalog_categories[i]], float(sims[q, i])) for i in nearest[q])
            predicted.append(int(np.argmax(fuse(priors[q], vote, weight))))
        out[f"prior weight {weight}"] = round(float(np.mean(np.array(predicted) == truth)), 4)
    return out


def training_summary(result: TuneResult, truth: NDArray[np.int64] | None = None) -> dict[str, object]:
    epochs = len(result.history)
    trained = [h.seconds for h in result.history]
    summary: dict[str, object] = {
        "pictures": result.pictures,
        "groups trained on": result.groups,
        "held-back R@1 before/after": [round(result.held_back_before, 4), round(result.held_back_after, 4)],
        "held-back metric": result.held_back_metric,
        "best epoch": result.best_epoch,
        "epochs run": epochs,
        "probe loss before/after": [round(result.probe_loss_before, 3), round(result.history[-1].probe_loss, 3)],
        "cache seconds": round(result.cache_seconds, 1),
        "seconds per epoch": round(float(np.mean(trained)), 1),
        "held-back R@1 per epoch": [round(h.held_back_r1, 3) for h in result.history],
        "held-back category top-1 per epoch": [round(h.held_back_category, 3) for h in result.history],
        "held-back category top-1 shipped/tuned": [
            round(result.held_back_category_before, 4),
            round(result.held_back_category_after, 4),
        ],
        "ms per picture per epoch": round(1000 * float(np.mean(trained)) / result.pictures, 1),
        "total seconds": round(result.seconds, 1),
        "switches (as tongkuan tune decides)": worth_switching(result, result.held_back_metric != "views"),
    }
    if result.recipe is not None:  # what the catalog's shape chose, where it differs from the flags
        summary["trained with"] = {k: v for k, v in result.recipe.__dict__.items() if k in LISTINGS}
    if truth is not None:
        trained_on = result.labels >= 0
        summary["pseudo-group purity"] = round(purity(result.labels[trained_on], truth[trained_on]), 4)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--shapes", default="retailer,lowres,studio,listings")
    parser.add_argument("--classes", type=int, default=None, help="Use this many classes (a smoke run).")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--epochs", type=int, default=Recipe.epochs)
    parser.add_argument(
        "--views",
        type=int,
        default=Recipe.cached_views,
        help="Cached views per picture (first one clean); 0: a fresh view at every step (the front runs each time).",
    )
    parser.add_argument("--studio-views", type=int, default=16)
    parser.add_argument("--studio-epochs", type=int, default=30, help="Studio epochs (each 2 batches of 32).")
    parser.add_argument("--p-background", type=float, default=Recipe.p_background)
    parser.add_argument("--per-product", type=int, default=0, help="Tuning pictures per product at most (0: all).")
    parser.add_argument("--head-dim", type=int, default=None)
    parser.add_argument("--pseudo", default=Recipe.pseudo)
    parser.add_argument("--pseudo-threshold", type=float, default=Recipe.pseudo_threshold)
    parser.add_argument("--pseudo-step", type=float, default=Recipe.pseudo_threshold_step)
    parser.add_argument("--pseudo-k", type=int, default=Recipe.pseudo_k)
    parser.add_argument(
        "--twin-threshold", type=float, default=Recipe.twin_threshold, help="Negative: no twins left out."
    )
    parser.add_argument("--recluster-every", type=int, default=Recipe.recluster_every)
    parser.add_argument("--lr", type=float, default=Recipe.lr_backbone, help="Backbone learning rate.")
    parser.add_argument("--frozen-blocks", type=int, default=None)
    parser.add_argument("--refresh-every", type=int, default=Recipe.refresh_views_every)
    parser.add_argument("--schedule", default=Recipe.schedule)
    parser.add_argument("--patience", type=int, default=Recipe.patience)
    parser.add_argument("--keep", default=Recipe.keep)
    parser.add_argument("--view-budget", type=int, default=Recipe.view_budget)
    parser.add_argument("--holdback", type=float, default=Recipe.holdback)
    parser.add_argument("--backgrounds", type=int, default=0, help="Clothing photos to paste products onto.")
    parser.add_argument(
        "--tune-share", type=float, default=0.5, help="Share of the classes tuned on (1: the whole catalog, as in use)."
    )
    parser.add_argument("--outliers", default=Recipe.outliers, help="drop or keep ungrouped listings.")
    parser.add_argument(
        "--listings",
        default=Recipe.listings,
        help="auto: listings mostly listed again train with their own recipe; off: with these flags.",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-bench-tune")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = args.shapes.split(",")
    started = time.perf_counter()
    root = args.data / "grocery_store"
    rows = [r | {"file": str(root / r["path"])} for r in read_rows(root / "labels.csv")]
    classes = sorted({int(r["class_id"]) for r in rows})
    rng = np.random.default_rng(args.seed)
    if args.classes:
        classes = sorted(rng.permutation(classes)[: args.classes].tolist())
    rows = [r for r in rows if int(r["class_id"]) in classes]
    tuned_classes = set(rng.permutation(classes)[: max(1, round(len(classes) * args.tune_share))].tolist())

    def of(split: str | tuple[str, ...]) -> Rows:
        splits = (split,) if isinstance(split, str) else split
        return [r for r in rows if r["split"] in splits]

    def labels(rs: Rows) -> NDArray[np.int64]:
        return np.array([int(r["class_id"]) for r in rs], dtype=np.int64)

    def for_tuning(rs: Rows) -> Rows:
        """The tuned classes' pictures, iconic first, at most `per_product` per class (seeded)."""
        picked = []
        for c in sorted(tuned_classes):
            members = [r for r in rs if int(r["class_id"]) == c]
            iconic = [r for r in members if r["split"] == "catalog"]
            photos = [r for r in members if r["split"] != "catalog"]
            order = np.random.default_rng([args.seed, c]).permutation(len(photos))
            keep = max(0, args.per_product - len(iconic)) if args.per_product else len(photos)
            picked += iconic + [photos[i] for i in order[:keep]]
        return picked

    val = of("val")
    q_labels = labels(val)
    q_tuned = np.isin(q_labels, list(tuned_classes))
    settings = Recipe(
        model=args.model, epochs=args.epochs, cached_views=args.views or None, head_dim=args.head_dim, seed=args.seed,
        threads=args.threads, min_products=min(20, max(3, len(tuned_classes) - 1)), pseudo=args.pseudo,
        pseudo_threshold=args.pseudo_threshold, pseudo_threshold_step=args.pseudo_step, pseudo_k=args.pseudo_k,
        recluster_every=args.recluster_every, lr_backbone=args.lr, frozen_blocks=args.frozen_blocks,
        refresh_views_every=args.refresh_every, schedule=args.schedule, patience=args.patience,
        holdback=args.holdback, keep=args.keep, view_budget=args.view_budget,
        outliers=args.outliers, listings=args.listings,
        twin_threshold=None if args.twin_threshold is None or args.twin_threshold < 0 else args.twin_threshold,
    )  # fmt: skip
    backgrounds = clothing_backgrounds(args.data, args.backgrounds)
    args.work.mkdir(parents=True, exist_ok=True)
    frozen = onnx_encoder(load_tunable(args.model), args.work, "frozen", args.threads)
    summary: dict[str, object] = {
        "model": args.model, "classes": len(classes), "tuned classes": len(tuned_classes), "queries": len(val),
        "settings": {k: v for k, v in settings.__dict__.items() if v is not None},
    }  # fmt: skip
    val_before = embed(frozen, [Path(r["file"]) for r in val])

    if "retailer" in shapes or "lowres" in shapes:
        catalog = of(("catalog", "train"))
        c_labels = labels(catalog)
        tuning = for_tuning(catalog)
        examples = examples_from_files([Path(r["file"]) for r in tuning], [r["class_id"] for r in tuning])
        result = tune(examples, settings, args.work / "retailer.pt", backgrounds)
        tuned = onnx_encoder(result.model, args.work, "retailer", args.threads)
        check = [Image.open(r["file"]).convert("RGB") for r in val[:8]]
        summary["retailer export max |onnx - torch|"] = export_error(
            result.model, args.work / "retailer" / "model.onnx", check
        )
        before, after = (
            embed(frozen, [Path(r["file"]) for r in catalog]),
            embed(tuned, [Path(r["file"]) for r in catalog]),
        )
        if "retailer" in shapes:
            val_after = embed(tuned, [Path(r["file"]) for r in val])
            # the learned whitening on top of the tuned features, learned from the catalog's
            # pictures grouped by product (as the service learns it)
            whiten = learn_whitening(after, c_labels, "tuned")
            summary["retailer"] = {
                "training": training_summary(result),
                "before (frozen whole picture)": split_recall(val_before, q_labels, q_tuned, before, c_labels, c_labels),
                "after": split_recall(val_after, q_labels, q_tuned, after, c_labels, c_labels),
                "after + whitening": split_recall(whiten(val_after), q_labels, q_tuned, whiten(after), c_labels, c_labels),
            }  # fmt: skip
            print(f"retailer: {json.dumps(summary['retailer'])}", file=sys.stderr)
        if "lowres" in shapes:
            small = [shrink(Path(r["file"])) for r in val]
            summary["lowres"] = {
                "query longest side px": LOWRES,
                "before (frozen whole picture)": split_recall(embed(frozen, small), q_labels, q_tuned, before, c_labels, c_labels),
                "after (retailer's tuned model)": split_recall(embed(tuned, small), q_labels, q_tuned, after, c_labels, c_labels),
            }  # fmt: skip
            print(f"lowres: {json.dumps(summary['lowres'])}", file=sys.stderr)

    if "studio" in shapes:
        iconic = of("catalog")
        i_labels = labels(iconic)
        tuning = [r for r in iconic if int(r["class_id"]) in tuned_classes]
        examples = examples_from_files([Path(r["file"]) for r in tuning], [r["class_id"] for r in tuning])
        studio_settings = Recipe(
            **{
                **settings.__dict__,
                "cached_views": args.studio_views,
                "groups_per_batch": 8,
                "epochs": args.studio_epochs,
                "p_background": args.p_background,
            }
        )
        result = tune(examples, studio_settings, args.work / "studio.pt", backgrounds)
        tuned = onnx_encoder(result.model, args.work, "studio", args.threads)
        paths = [Path(r["file"]) for r in iconic]
        summary["studio"] = {
            "training": training_summary(result),
            "before (frozen whole picture)": split_recall(val_before, q_labels, q_tuned, embed(frozen, paths), i_labels, i_labels),
            "after": split_recall(embed(tuned, [Path(r["file"]) for r in val]), q_labels, q_tuned, embed(tuned, paths), i_labels, i_labels),
        }  # fmt: skip
        print(f"studio: {json.dumps(summary['studio'])}", file=sys.stderr)

    if "listings" in shapes:
        listings = of("train")
        l_labels = labels(listings)
        l_ids = np.arange(len(listings))
        tuning = for_tuning(listings)
        examples = examples_from_files([Path(r["file"]) for r in tuning], [r["path"] for r in tuning])
        result = tune(examples, settings, args.work / "listings.pt", backgrounds)
        tuned = onnx_encoder(result.model, args.work, "listings", args.threads)
        paths = [Path(r["file"]) for r in listings]
        frozen_listings, tuned_listings = embed(frozen, paths), embed(tuned, paths)
        val_after = embed(tuned, [Path(r["file"]) for r in val])
        measured: dict[str, object] = {
            "training": training_summary(result, labels(tuning)),
            "before (frozen whole picture)": split_recall(val_before, q_labels, q_tuned, frozen_listings, l_ids, l_labels),
            "after": split_recall(val_after, q_labels, q_tuned, tuned_listings, l_ids, l_labels),
        }  # fmt: skip
        # what `tongkuan tune` serves: the whitening learned again from near-duplicate pairs
        for name, queries, gallery in (("before", val_before, frozen_listings), ("after", val_after, tuned_listings)):
            whitening = listings_whitening(gallery, args.model)
            measured[f"{name} + whitening from pairs"] = (
                "not learned"
                if whitening is None
                else split_recall(whitening(queries), q_labels, q_tuned, whitening(gallery), l_ids, l_labels)
            )
        summary["listings"] = measured
        print(f"listings: {json.dumps(summary['listings'])}", file=sys.stderr)

    for shape in ("clothing", "fashion"):
        if shape not in shapes:
            continue
        wear = args.data / "clothing_dataset"
        photos = [r for r in read_rows(wear / "labels.csv") if r["service_category"] in CATEGORY_BY_NAME]
        asked = photos[::2]
        if shape == "clothing":
            folder, listed = wear, photos[1::2]
        else:
            folder = args.data / "fashion_product_images_small"
            shots = [r for r in read_rows(folder / "labels.csv") if r["service_category"] in CATEGORY_BY_NAME]
            listed = shots[1::12]
        if args.classes:  # a smoke run
            asked, listed = asked[: args.classes * 4], listed[: args.classes * 8]
        positions = [CATEGORY_POSITION[CATEGORY_BY_NAME[r["service_category"]]] for r in listed]
        truth = np.array([CATEGORY_POSITION[CATEGORY_BY_NAME[r["service_category"]]] for r in asked])
        paths = [folder / r["path"] for r in listed]
        examples = examples_from_files(paths, [r["path"] for r in listed], categories=positions)
        result = tune(examples, settings, args.work / f"{shape}.pt", backgrounds)
        tuned = onnx_encoder(result.model, args.work, shape, args.threads)
        asked_paths = [wear / r["path"] for r in asked]
        measured = {}
        for name, encoder in (
            ("before (shipped model, ImageNet prior)", frozen),
            ("after (tuned, category head)", tuned),
        ):
            vision = Vision(encoder)
            measured[name] = category_top1(describe(vision, asked_paths), truth, describe(vision, paths)[0], positions)
        summary[shape] = {
            "catalog": len(listed),
            "queries": len(asked),
            "training": training_summary(result),
        } | measured
        print(f"{shape}: {json.dumps(summary[shape])}", file=sys.stderr)

    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

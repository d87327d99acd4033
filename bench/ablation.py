"""Retrieval levers, one at a time, on the grocery shopper photos, in one run.

    python bench/ablation.py [--data ../shared/data] [--model efficientnet-lite2] [--limit N]

Every variant starts from the same pictures and the same subject crops as the service
(detect on the whole picture, crop the main subject, embed the crop) and changes one thing:
- pooling of the crop's last feature map: average (the service today), GeM (p = 3), max
  (MAC), R-MAC (max over regions at three scales, summed);
- input: the square resize (today) against resizing the longer side and padding, and two
  input sizes averaged (multi-scale);
- post-processing of the vectors: PCA whitening learned on the catalog (to 512 and 256
  dimensions), learned whitening from the catalog's products (128, 256, 512 dimensions), database-side augmentation (DBA, each catalog vector averaged with its 2
  nearest) and alpha query expansion (alpha-QE, the query averaged with its 3 nearest
  catalog pictures, weighted by similarity^3).
Scores: photo -> catalog (iconic + train photos, 81 products) Recall@1/5/10 over products
ranked as the service ranks them, mAP over pictures; photo -> the 81 iconic shots alone
Recall@1/5. Time: the extra cost of each lever per query picture, measured here. The last
line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from quality import retrieval  # bench/quality.py

from tongkuan.bench import OnnxEncoder, cropped, detect_regions, l2_normalise, learn_whitening, read_rows, resolve_model

REPO = Path(__file__).resolve().parent.parent
BATCH = 16
Matrix = NDArray[np.float32]


def pad_square(image: Image.Image) -> Image.Image:
    """The longer side kept, the shorter padded with grey, so nothing is squashed."""
    side = max(image.size)
    canvas = Image.new("RGB", (side, side), (127, 127, 127))
    canvas.paste(image, ((side - image.size[0]) // 2, (side - image.size[1]) // 2))
    return canvas


def crops_of(encoder: OnnxEncoder, paths: list[Path]) -> list[Image.Image]:
    """Each picture's main-subject crop, chosen as the service chooses it."""
    out = []
    for start in range(0, len(paths), BATCH):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + BATCH]]
        whole = encoder.run(images)
        assert whole.feature_maps is not None
        for image, fmap in zip(images, whole.feature_maps, strict=True):
            box = detect_regions(fmap, *image.size)[0]
            out.append(image.crop((box.x1, box.y1, box.x2, box.y2)) if cropped(box, image.size) else image)
    return out


def feature_maps(encoder: OnnxEncoder, images: list[Image.Image]) -> Matrix:
    maps = []
    for start in range(0, len(images), BATCH):
        run = encoder.run(images[start : start + BATCH])
        assert run.feature_maps is not None
        maps.append(run.feature_maps.astype(np.float32))
    return np.concatenate(maps)


def pool(maps: Matrix, how: str) -> Matrix:
    x = np.maximum(maps, 0.0)
    if how == "avg":
        v = x.mean(axis=(2, 3))
    elif how == "gem":
        v = np.power(np.power(np.maximum(x, 1e-6), 3.0).mean(axis=(2, 3)), 1.0 / 3.0)
    elif how == "max":
        v = x.max(axis=(2, 3))
    elif how == "rmac":
        v = rmac(x)
    else:
        raise ValueError(how)
    return l2_normalise(v.astype(np.float32))


def rmac(x: Matrix) -> Matrix:
    """Max-pooled square regions at three scales (R-MAC, Tolias et al. 2016), each
    L2-normalised, summed."""
    _, _, h, w = x.shape
    total = np.zeros(x.shape[:2], dtype=np.float32)
    for level in (1, 2, 3):
        side = max(1, int(2 * min(h, w) / (level + 1)))
        steps_y = max(1, level + (h > w))
        steps_x = max(1, level + (w > h))
        for i in range(steps_y):
            for j in range(steps_x):
                y = 0 if steps_y == 1 else round(i * (h - side) / (steps_y - 1))
                x0 = 0 if steps_x == 1 else round(j * (w - side) / (steps_x - 1))
                region = x[:, :, y : y + side, x0 : x0 + side].max(axis=(2, 3))
                total += l2_normalise(region.astype(np.float32))
    return total


def pca_whitening(train: Matrix, dim: int) -> tuple[Matrix, Matrix]:
    mean = train.mean(axis=0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    projection = (vt[:dim].T / np.maximum(s[:dim], 1e-6)).astype(np.float32)
    return mean.astype(np.float32), projection


def whiten(x: Matrix, model: tuple[Matrix, Matrix]) -> Matrix:
    mean, projection = model
    return l2_normalise(((x - mean) @ projection).astype(np.float32))


def dba(catalog: Matrix, k: int = 2) -> Matrix:
    sims = catalog @ catalog.T
    nearest = np.argsort(-sims, axis=1)[:, : k + 1]  # itself first
    return l2_normalise(catalog[nearest].mean(axis=1))


def alpha_qe(queries: Matrix, catalog: Matrix, k: int = 3, alpha: float = 3.0) -> Matrix:
    sims = queries @ catalog.T
    nearest = np.argsort(-sims, axis=1)[:, :k]
    weights = np.power(np.maximum(np.take_along_axis(sims, nearest, axis=1), 0.0), alpha)
    expanded = queries + (weights[:, :, None] * catalog[nearest]).sum(axis=1)
    return l2_normalise(expanded.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--limit", type=int, default=None, help="use every 10th catalog picture and N queries")
    parser.add_argument("--model-cache", type=Path, default=None, help="data directory to export the model into")
    args = parser.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as home:
        spec = resolve_model(args.model, args.model_cache or Path(home))
        encoder = OnnxEncoder(spec, threads=2)
        rows = read_rows(args.data / "grocery_store" / "labels.csv")
        step = 1 if args.limit is None else 10
        catalog_rows = [r for r in rows if r["split"] in ("train", "catalog")][::step]
        query_rows = [r for r in rows if r["split"] == "val"][: args.limit]

        def paths(rs: list[dict[str, str]]) -> list[Path]:
            return [args.data / "grocery_store" / r["path"] for r in rs]

        def labels(rs: list[dict[str, str]]) -> NDArray[np.int64]:
            return np.array([int(r["class_id"]) for r in rs])

        started = time.perf_counter()
        crops = {name: crops_of(encoder, paths(rs)) for name, rs in (("catalog", catalog_rows), ("query", query_rows))}
        print(f"crops in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        iconic_index = [i for i, r in enumerate(catalog_rows) if r["split"] == "catalog"]

        def maps_for(transform: object = None, size: int | None = None) -> tuple[dict[str, Matrix], float]:
            enc = encoder if size is None else OnnxEncoder(replace(spec, input_size=size), threads=2)
            out = {}
            started = time.perf_counter()
            for name, images in crops.items():
                images = [transform(i) for i in images] if callable(transform) else images
                out[name] = feature_maps(enc, images)
            return out, (time.perf_counter() - started) / sum(len(v) for v in crops.values())

        base, base_s = maps_for()
        print(f"base maps {base['catalog'].shape} in {base_s * 1000:.1f} ms/picture", file=sys.stderr)
        results: dict[str, dict[str, object]] = {}

        def score(name: str, catalog: Matrix, queries: Matrix, extra_ms: float) -> None:
            q_labels, c_labels = labels(query_rows), labels(catalog_rows)
            iconic = catalog[iconic_index] if iconic_index else catalog
            results[name] = {
                "photo->catalog": retrieval(queries, q_labels, catalog, c_labels),
                "photo->iconic": {
                    k: v
                    for k, v in retrieval(queries, q_labels, iconic, c_labels[iconic_index]).items()
                    if k in ("R@1", "R@5")
                },
                "extra ms per query": round(extra_ms, 2),
            }
            print(name, json.dumps(results[name]), file=sys.stderr)

        pooled = {}
        for how in ("avg", "gem", "max", "rmac"):
            t = time.perf_counter()
            cat, qry = pool(base["catalog"], how), pool(base["query"], how)
            per = (time.perf_counter() - t) / (len(cat) + len(qry)) * 1000
            pooled[how] = (cat, qry)
            score(f"pooling: {how}" + (" (today)" if how == "avg" else ""), cat, qry, per)

        padded, padded_s = maps_for(pad_square)
        score("input: pad to square (avg)", pool(padded["catalog"], "avg"), pool(padded["query"], "avg"), 0.0)
        larger_size = int(spec.input_size * 1.35) // 4 * 4
        larger, larger_s = maps_for(size=larger_size)
        score(
            f"input: {larger_size} px (avg)",
            pool(larger["catalog"], "avg"),
            pool(larger["query"], "avg"),
            (larger_s - base_s) * 1000,
        )
        multi_cat = l2_normalise(pool(base["catalog"], "avg") + pool(larger["catalog"], "avg"))
        multi_q = l2_normalise(pool(base["query"], "avg") + pool(larger["query"], "avg"))
        score(f"multi-scale: {spec.input_size} + {larger_size} px (avg)", multi_cat, multi_q, larger_s * 1000)

        best = max(
            ("avg", "gem", "max", "rmac"),
            key=lambda h: results[f"pooling: {h}" + (" (today)" if h == "avg" else "")]["photo->catalog"]["R@1"],
        )  # type: ignore[index]
        cat, qry = pooled[best]
        for dim in (512, 256):
            model = pca_whitening(cat, dim)
            score(
                f"{best} + PCA whitening to {dim} (learned on the catalog)",
                whiten(cat, model),
                whiten(qry, model),
                0.05,
            )
        # learned (supervised) whitening, as `tongkuan whiten` learns it from the catalog's
        # products with several pictures
        c_labels = labels(catalog_rows)
        for base_name, (cat, qry) in (("avg", pooled["avg"]), (best, pooled[best])):
            for dims in (128, 256, 512):
                learned = learn_whitening(cat, c_labels, spec.name, dims=dims)
                t = time.perf_counter()
                mapped = learned(qry)
                per = (time.perf_counter() - t) / len(qry) * 1000
                score(f"{base_name} + learned whitening to {dims}", learned(cat), mapped, per)
            learned = learn_whitening(cat, c_labels, spec.name)
            score(f"{base_name} + learned whitening + DBA (k=2)", dba(learned(cat)), learned(qry), 0.0)
        for base_name, (cat, qry) in (("avg", pooled["avg"]), (best, pooled[best])):
            score(f"{base_name} + DBA (k=2)", dba(cat), qry, 0.0)
            t = time.perf_counter()
            expanded = alpha_qe(qry, cat)
            score(f"{base_name} + alpha-QE (k=3, alpha=3)", cat, expanded, (time.perf_counter() - t) / len(qry) * 1000)
            score(f"{base_name} + DBA + alpha-QE", dba(cat), alpha_qe(qry, dba(cat)), 0.0)
        print(json.dumps({"queries": len(query_rows), "catalog": len(catalog_rows), "results": results}))


if __name__ == "__main__":
    main()

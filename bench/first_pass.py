"""A cheaper first pass for queries: what it saves and what it costs in search quality.

    python bench/first_pass.py [--data ../shared/data] [--model efficientnet-lite2]
                               [--sizes 224,192,160] [--int8 MODEL_JSON]

A query runs the model twice: on the whole picture (its activation map finds the subject;
30 % of the embedding is the whole picture's) and on the subject's crop. Here the first
pass runs at smaller input sizes, and optionally the second with an 8-bit model (`--int8`,
a model.json from `tongkuan quantize` or `bench/quantize.py`), for the grocery val photos
only: the catalog is described as the service describes it today, so stored catalogs would
keep working. Reports, in one process: the forward pass at each size (batch 1, interleaved),
how far the main subject's box moves (IoU with today's), and R@1 on the quality benchmark's
grocery tables (`bench/quality.py`: catalog and iconic shots, with and without the learned
whitening, products it was not learned from, listings with and without their pairs'
whitening). The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from quality import describe, listing_recall, matrix, retrieval, unseen_products  # bench/quality.py

from tongkuan.bench import (
    CheapFirstPass,
    ModelSpace,
    ModelSpec,
    OnnxEncoder,
    Vision,
    cropped,
    learn_whitening,
    listings_whitening,
    read_rows,
    resolve_model,
)

REPO = Path(__file__).resolve().parent.parent


def forward_ms(encoders: dict[str, OnnxEncoder], images: list[Image.Image]) -> dict[str, float]:
    """Median single-picture forward pass of each encoder, interleaved picture by picture."""
    for encoder in encoders.values():
        encoder.run(images[:2])
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for image in images:
        for name, encoder in encoders.items():
            started = time.perf_counter()
            encoder.run([image])
            times[name].append(time.perf_counter() - started)
    return {name: round(float(np.median(t)) * 1000, 2) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--model-cache", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-bench")
    parser.add_argument("--sizes", default="224,192,160", help="Input sizes of the cheaper first pass.")
    parser.add_argument("--int8", type=Path, default=None, help="An 8-bit model.json for the second pass.")
    parser.add_argument("--limit", type=int, default=None, help="Queries (a smoke run).")
    args = parser.parse_args()
    started = time.perf_counter()
    spec = resolve_model(args.model, args.model_cache)
    encoder = OnnxEncoder(spec)
    today = Vision(encoder)
    root = args.data / "grocery_store"
    rows = read_rows(root / "labels.csv")
    catalog_rows = [r for r in rows if r["split"] in ("train", "catalog")][:: 1 if args.limit is None else 10]
    val_rows = [r for r in rows if r["split"] == "val"][: args.limit]
    iconic = np.array([r["split"] == "catalog" for r in catalog_rows])
    labels = np.array([int(r["class_id"]) for r in catalog_rows])
    q_labels = np.array([int(r["class_id"]) for r in val_rows])
    catalog = matrix(describe(today, [root / r["path"] for r in catalog_rows], True))
    whitening = learn_whitening(catalog, labels, spec.name)
    listings = catalog[~iconic]
    pairs = listings_whitening(listings, spec.name, "auto")

    def tables(queries: NDArray[np.float32]) -> dict[str, float]:
        r1 = {
            "catalog": retrieval(queries, q_labels, catalog, labels)["R@1"],
            "iconic": retrieval(queries, q_labels, catalog[iconic], labels[iconic])["R@1"],
            "catalog + whitening": retrieval(whitening(queries), q_labels, whitening(catalog), labels)["R@1"],
            "iconic + whitening": retrieval(whitening(queries), q_labels, whitening(catalog[iconic]), labels[iconic])[
                "R@1"
            ],
            "not learned from": unseen_products(spec.name, queries, q_labels, catalog, labels).get("R@1 with", 0.0),
            "listings": listing_recall(queries, q_labels, listings, labels[~iconic])["R@1"],
        }
        if pairs is not None:
            r1["listings + pairs' whitening"] = listing_recall(
                pairs(queries), q_labels, pairs(listings), labels[~iconic]
            )["R@1"]
        return r1

    paths = [root / r["path"] for r in val_rows]
    space = ModelSpace(spec.dim)
    baseline = describe(today, paths, True, insets=True)
    summary: dict[str, object] = {"model": spec.name, "queries": len(val_rows), "catalog": len(catalog_rows)}
    sizes = [Image.open(p).size for p in paths]
    second = {"float": encoder}
    if args.int8:
        second["int8"] = OnnxEncoder(ModelSpec.from_json(args.int8))
    firsts = {int(size): OnnxEncoder(dataclasses.replace(spec, input_size=int(size))) for size in args.sizes.split(",")}
    firsts[spec.input_size] = encoder
    images = [Image.open(p).convert("RGB") for p in paths[:120]]
    timed = forward_ms(
        {f"float {size} px": e for size, e in firsts.items()}
        | {f"{name} {spec.input_size} px": e for name, e in second.items() if name != "float"},
        images,
    )
    summary["one forward pass, ms"] = timed
    summary["today: two float passes at the model's size"] = {
        "vision ms": round(2 * timed[f"float {spec.input_size} px"], 1),
        "cropped": sum(cropped(d.searched, size) for d, size in zip(baseline, sizes, strict=True)),
        **tables(space(matrix(baseline))),
    }
    for size, first in sorted(firsts.items(), reverse=True):
        for name, embed in second.items():
            if size == spec.input_size and name == "float":
                continue  # today
            vision = CheapFirstPass(embed, first)
            queries = describe(vision, paths, True, insets=True)
            ious = [box.iou(d.searched) for box, d in zip(vision.boxes, baseline, strict=True)]
            summary[f"first pass {size} px float, second {name}"] = {
                "vision ms": round(timed[f"float {size} px"] + timed[f"{name} {spec.input_size} px"], 1),
                "box IoU with today's": round(float(np.mean(ious)), 3),
                "cropped": sum(cropped(box, size) for box, size in zip(vision.boxes, sizes, strict=True)),
                **tables(space(matrix(queries))),
            }
            print(json.dumps({k: summary[k] for k in list(summary)[-1:]}), file=sys.stderr)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

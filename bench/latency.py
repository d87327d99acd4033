"""Query latency of a tuned model against the model it was tuned from, in one process.

    python bench/latency.py MODEL_DIR_A MODEL_DIR_B [--data ../shared/data] [--rounds 60]

Each folder holds a `model.json` and `model.onnx` (a data directory's `models/<name>/`).
Both describe the same real photos one at a time (detect, crop, classify, embed: the query
path), alternating so the machine's noise hits both alike; the last line printed is a JSON
summary with each model's p50 and the ratio B/A.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from PIL import Image

from tongkuan.bench import ModelSpec, OnnxEncoder, Vision

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    photos = sorted((args.data / "grocery_store" / "images" / "val").rglob("*.jpg"))[::10]
    images = [Image.open(p).convert("RGB") for p in photos]
    visions = [Vision(OnnxEncoder(ModelSpec.from_json(folder / "model.json"))) for folder in (args.a, args.b)]
    for vision in visions:  # load and warm up
        vision.describe(images[:2])
    times: list[list[float]] = [[], []]
    for round_ in range(args.rounds):
        image = images[round_ % len(images)]
        for i in (round_ % 2, 1 - round_ % 2):
            started = time.perf_counter()
            visions[i].describe([image])
            times[i].append((time.perf_counter() - started) * 1000)
    p50 = [statistics.median(t) for t in times]
    print(
        json.dumps(
            {
                "a": str(args.a),
                "b": str(args.b),
                "p50_ms": [round(v, 2) for v in p50],
                "ratio_b_over_a": round(p50[1] / p50[0], 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""The 8-bit model against its float original: one forward pass, and the same pictures' embeddings.

    python bench/quantize.py [--model efficientnet-lite2] [--pictures 256] [--out DIR]

Quantizes a shipped model as `tongkuan quantize` does, calibrated on grocery catalog
pictures (iconic shots and train photos, seeded draw), then, in the same process and
interleaved so that machine noise hits both alike: the median time of one single-picture
forward pass (and of a batch of 16) for each, on the same pictures; the cosine between each
val photo's float and 8-bit embeddings; and the CPU's instruction sets that ONNX Runtime's
integer kernels can use. Prints one JSON line last, with the 8-bit model's model.json, which
`bench/quality.py --model <model.json>` measures on every quality table.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tongkuan.bench import ModelSpec, OnnxEncoder, quantize_model, read_rows, resolve_model

REPO = Path(__file__).resolve().parent.parent
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    present = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return [flag for flag in FLAGS if flag in present]


def timed(encoder: OnnxEncoder, batch: list[Image.Image], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.run(batch)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--model", default="efficientnet-lite2")
    parser.add_argument("--pictures", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-int8")
    parser.add_argument("--model-cache", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-bench")
    args = parser.parse_args()
    spec = resolve_model(args.model, args.model_cache)
    rows = read_rows(args.data / "grocery_store" / "labels.csv")
    catalog = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] in ("catalog", "train")]
    drawn = random.Random(0).sample(catalog, min(args.pictures, len(catalog)))
    calibration = [Image.open(p).convert("RGB") for p in drawn]
    started = time.perf_counter()
    described = quantize_model(spec, calibration, args.out / args.model, {"quantized_from": args.model})
    quantize_seconds = time.perf_counter() - started
    int8 = ModelSpec.from_json(described)

    val = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] == "val"][:200]
    pictures = [Image.open(p).convert("RGB") for p in val]
    encoders = {"float32": OnnxEncoder(spec, threads=args.threads), "int8": OnnxEncoder(int8, threads=args.threads)}
    embeddings = {name: encoder.run(pictures).embeddings for name, encoder in encoders.items()}
    cosines = np.sum(embeddings["float32"] * embeddings["int8"], axis=1)
    single: dict[str, list[float]] = {name: [] for name in encoders}
    batch16: dict[str, list[float]] = {name: [] for name in encoders}
    for start in range(0, 40, 4):  # interleaved: noise hits both alike
        for name, encoder in encoders.items():
            for picture in pictures[start : start + 4]:
                single[name] += timed(encoder, [picture], 1)
            batch16[name] += timed(encoder, pictures[start : start + 16], 1)
    ms = {name: round(float(np.median(times)) * 1000, 2) for name, times in single.items()}
    ms16 = {name: round(float(np.median(times)) * 1000, 1) for name, times in batch16.items()}
    print(
        json.dumps(
            {
                "model": args.model,
                "int8_model_json": str(described),
                "calibration_pictures": len(calibration),
                "quantize_seconds": round(quantize_seconds, 1),
                "cpu_flags": cpu_flags(),
                "single_forward_ms": ms,
                "single_speedup": round(ms["float32"] / ms["int8"], 2),
                "batch16_forward_ms": ms16,
                "batch16_speedup": round(ms16["float32"] / ms16["int8"], 2),
                "embedding_cosine": {
                    "mean": round(float(cosines.mean()), 4),
                    "p5": round(float(np.percentile(cosines, 5)), 4),
                    "min": round(float(cosines.min()), 4),
                },
            }
        )
    )


if __name__ == "__main__":
    main()

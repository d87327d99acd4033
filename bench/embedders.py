"""What the field's image embedders cost on the CPU, against the shipped EfficientNet-Lite2.

    python bench/embedders.py [--only clip-b32,dinov2-s14] [--runs 20] [--batch-runs 5]
                              [--batch 16] [--cache DIR] [--model-cache DIR] [--data ../shared/data]

Needs `pip install transformers` (not a dependency of the service). No weights can be fetched,
and only the cost is measured, so each architecture is built from its transformers config with
RANDOM weights (torch seeded): the CLIP ViT-B/32 and ViT-B/16 vision towers with their
projection, SigLIP-B/16's vision tower with its attention-pooling head, DINOv2-S/14 and B/14
(the normalised class token; position embeddings for 518 px as the released checkpoints have,
interpolated to the input), all at 224 px. Each is exported once into --cache (ONNX opset 17,
a dynamic batch axis) with an 8-bit copy (ONNX Runtime's dynamic quantization of MatMul).
The baseline, in the same run, is the shipped EfficientNet-Lite2 (260 px; also its feature map
and logits, as the service reads them), float and 8-bit as `tongkuan quantize` makes it
(static, calibrated on catalog pictures).

Every model runs as the service runs it (`OnnxEncoder`: ONNX Runtime on the CPU, 2 intra-op
threads, idle workers not spinning), on real shopper photos (grocery val split) already at its
input size: the resize is left out, the conversion to floats is in. The models take turns run
by run, the batch-1 and the batch runs spread over the same rounds, so that the machine's noise
and drift hit all figures alike; each turn first runs one picture untimed, so that the model's
weights are in the caches. Reported per model: parameters, ONNX file sizes, embedding
dimension, the median ms per picture at batch 1 and at --batch, float and 8-bit, each also as
a multiple of Lite2's float batch-1 time of the same run (the multiples are what compare across
runs and machines), and the cosine between each photo's float and 8-bit embedding; "centred"
takes the photos' mean embedding off first, since a random network gives the photos much alike
vectors ("between photos"). With random weights the cosine checks the quantized graph, not the
accuracy a trained model would keep. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from PIL import Image

from tongkuan.bench import ModelSpec, OnnxEncoder, quantize_model, read_rows, resolve_model

REPO = Path(__file__).resolve().parent.parent
BASELINE = "efficientnet-lite2"
CLIP_MEAN, CLIP_STD = (122.771, 116.746, 104.094), (68.501, 66.632, 70.323)
IMAGENET_MEAN, IMAGENET_STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Architecture:
    """One embedder: its transformers model class and config, and how its input is normalised."""

    model_class: str
    config_class: str
    config: dict[str, Any]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str  # the field of the model's output that is the picture's embedding
    size: int = 224


VIT_B = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
ARCHITECTURES = {
    "clip-b32": Architecture(
        "CLIPVisionModelWithProjection",
        "CLIPVisionConfig",
        {**VIT_B, "patch_size": 32, "image_size": 224, "projection_dim": 512},
        CLIP_MEAN,
        CLIP_STD,
        "image_embeds",
    ),
    "clip-b16": Architecture(
        "CLIPVisionModelWithProjection",
        "CLIPVisionConfig",
        {**VIT_B, "patch_size": 16, "image_size": 224, "projection_dim": 512},
        CLIP_MEAN,
        CLIP_STD,
        "image_embeds",
    ),
    "siglip-b16": Architecture(
        "SiglipVisionModel",
        "SiglipVisionConfig",
        {**VIT_B, "patch_size": 16, "image_size": 224},
        (127.5, 127.5, 127.5),
        (127.5, 127.5, 127.5),
        "pooler_output",
    ),
    "dinov2-s14": Architecture(
        "Dinov2Model",
        "Dinov2Config",
        {"hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12, "mlp_ratio": 4, "image_size": 518},
        IMAGENET_MEAN,
        IMAGENET_STD,
        "pooler_output",
    ),
    "dinov2-b14": Architecture(
        "Dinov2Model",
        "Dinov2Config",
        {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12, "mlp_ratio": 4, "image_size": 518},
        IMAGENET_MEAN,
        IMAGENET_STD,
        "pooler_output",
    ),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export(name: str, arch: Architecture, folder: Path) -> dict[str, Any]:
    """Build `arch` with seeded random weights and write `float.onnx`, `int8.onnx` and
    `meta.json` (parameters, dimension) into `folder`, unless an earlier run did with the same config."""
    meta = folder / "meta.json"
    if meta.exists():
        done: dict[str, Any] = json.loads(meta.read_text())
        if done["config"] == arch.config:
            return done
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built from a config: nothing to fetch
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.manual_seed(0)  # per architecture, so that --only gives the same weights
    config = getattr(transformers, arch.config_class)(**arch.config)
    model = getattr(transformers, arch.model_class)(config).eval()
    params = sum(p.numel() for p in model.parameters())

    class Embedding(torch.nn.Module):
        """The model with the picture's embedding as its one output."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return getattr(self.model(pixel_values=pixel_values), arch.output)  # type: ignore[no-any-return]

    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, asked for
        # shape checks and SDPA's is_causal, constant for a fixed input size (the batch stays free)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
        torch.onnx.export(
            Embedding().eval(),
            (torch.zeros(1, 3, arch.size, arch.size),),
            str(folder / "float.tmp.onnx"),
            input_names=["pixel_values"],
            output_names=["embedding"],
            dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        dim = int(Embedding()(torch.zeros(1, 3, arch.size, arch.size)).shape[-1])
    (folder / "float.tmp.onnx").replace(folder / "float.onnx")
    log(f"{name}: {params / 1e6:.1f} M parameters exported in {time.perf_counter() - started:.0f} s")
    started = time.perf_counter()
    quantize_dynamic(
        folder / "float.onnx",
        folder / "int8.tmp.onnx",
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
    )
    (folder / "int8.tmp.onnx").replace(folder / "int8.onnx")
    log(f"{name}: quantized in {time.perf_counter() - started:.0f} s")
    described = {"params": params, "dim": dim, "config": arch.config}
    meta.write_text(json.dumps(described))
    return described


def spec_of(name: str, arch: Architecture, path: Path, dim: int) -> ModelSpec:
    """How the encoder feeds an exported architecture (pictures come at its size: no resize)."""
    return ModelSpec(
        name=name,
        path=path,
        input_size=arch.size,
        dim=dim,
        input_name="pixel_values",
        mean=arch.mean,
        std=arch.std,
        embedding_output="embedding",
    )


def onnx_params(path: Path) -> int:
    """Weights in an ONNX file (the shipped model has no torch module at hand here)."""
    return sum(int(np.prod(tensor.dims)) for tensor in onnx.load(str(path)).graph.initializer)


def megabytes(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def medians_ms(
    encoders: dict[tuple[str, str], OnnxEncoder],
    pictures: dict[int, list[Image.Image]],
    runs: dict[int, int],
) -> dict[int, dict[tuple[str, str], float]]:
    """Median ms per picture of each encoder at each batch size (`runs`: size -> timed runs).
    The encoders take turns (each round starting one further along), and each size's runs are
    spread evenly over the rounds, so that the machine's drift hits every figure alike. Each
    turn first runs one picture untimed: the timed runs find the model's weights in the caches,
    as in a service running one model."""
    keys = list(encoders)
    rounds = max(runs.values())
    times: dict[int, dict[tuple[str, str], list[float]]] = {size: {key: [] for key in keys} for size in runs}

    def batch_of(key: tuple[str, str], size: int, round_: int) -> list[Image.Image]:
        shown = pictures[encoders[key].spec.input_size]
        start = (round_ * size) % len(shown)
        return (shown[start:] + shown[:start])[:size]

    for key in keys:
        for size in runs:
            encoders[key].run(batch_of(key, size, 0))
    for round_ in range(rounds):
        for key in keys[round_ % len(keys) :] + keys[: round_ % len(keys)]:
            encoders[key].run(batch_of(key, 1, round_ + 1))
            for size, count in runs.items():
                if (round_ * count) % rounds < count:  # `count` of the rounds, evenly spread
                    chosen = batch_of(key, size, round_)
                    started = time.perf_counter()
                    encoders[key].run(chosen)
                    times[size][key].append((time.perf_counter() - started) * 1000 / size)
    return {size: {key: statistics.median(t) for key, t in by_key.items()} for size, by_key in times.items()}


def cosines(float_: NDArray[np.float32], int8: NDArray[np.float32]) -> dict[str, float]:
    """Each photo's float against its 8-bit embedding: as they are, and with the photos' mean
    embedding taken off (what tells the photos apart), plus how alike the photos are in float."""

    def rows(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]

    plain = rows(float_, int8)
    centred = rows(float_ - float_.mean(axis=0), int8 - int8.mean(axis=0))
    between = float_ @ float_.T
    others = between[~np.eye(len(float_), dtype=bool)]
    return {
        "mean": round(float(plain.mean()), 4),
        "min": round(float(plain.min()), 4),
        "centred mean": round(float(centred.mean()), 4),
        "between photos (float)": round(float(others.mean()), 4) if others.size else 1.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--only", default=",".join(ARCHITECTURES), help="Architectures, comma-separated.")
    parser.add_argument("--runs", type=int, default=20, help="Timed runs at batch 1.")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--batch-runs", type=int, default=5, help="Timed runs at --batch.")
    parser.add_argument("--pictures", type=int, default=16, help="Val photos (timed, and compared float/8-bit).")
    parser.add_argument("--calibration", type=int, default=64, help="Catalog pictures for Lite2's 8-bit copy.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-embedders")
    parser.add_argument("--model-cache", type=Path, default=Path(tempfile.gettempdir()) / "tongkuan-bench")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name]
    unknown = [name for name in chosen if name not in ARCHITECTURES]
    if args.batch < 2 or min(args.runs, args.batch_runs) < 1:
        parser.error("--batch takes 2 or more pictures, --runs and --batch-runs 1 or more")
    if unknown:
        parser.error(f"unknown architecture {', '.join(unknown)}; known: {', '.join(ARCHITECTURES)}")

    rows = read_rows(args.data / "grocery_store" / "labels.csv")
    val = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] == "val"]
    photos = [Image.open(p).convert("RGB") for p in random.Random(0).sample(val, min(args.pictures, len(val)))]
    catalog = [args.data / "grocery_store" / r["path"] for r in rows if r["split"] in ("catalog", "train")]
    drawn = random.Random(0).sample(catalog, min(args.calibration, len(catalog)))

    lite2 = resolve_model(BASELINE, args.model_cache)
    int8_folder = args.cache / f"{BASELINE}-int8-{len(drawn)}"
    if not (int8_folder / "model.json").exists():
        log(f"{BASELINE}: quantizing, calibrated on {len(drawn)} catalog pictures")
        quantize_model(lite2, [Image.open(p).convert("RGB") for p in drawn], int8_folder, {"quantized_from": BASELINE})
    lite2_int8 = ModelSpec.from_json(int8_folder / "model.json")
    specs: dict[tuple[str, str], ModelSpec] = {(BASELINE, "float"): lite2, (BASELINE, "int8"): lite2_int8}
    about: dict[str, dict[str, Any]] = {
        BASELINE: {
            "params_m": round(onnx_params(lite2.path) / 1e6, 1),
            "dim": lite2.dim,
            "input": lite2.input_size,
            "mb": {"float": megabytes(lite2.path), "int8": megabytes(lite2_int8.path)},
        }
    }
    for name in chosen:
        arch = ARCHITECTURES[name]
        meta = export(name, arch, args.cache / name)
        for precision in ("float", "int8"):
            specs[name, precision] = spec_of(name, arch, args.cache / name / f"{precision}.onnx", meta["dim"])
        about[name] = {
            "params_m": round(meta["params"] / 1e6, 1),
            "dim": meta["dim"],
            "input": arch.size,
            "mb": {p: megabytes(args.cache / name / f"{p}.onnx") for p in ("float", "int8")},
        }

    encoders = {key: OnnxEncoder(spec, threads=args.threads) for key, spec in specs.items()}
    sizes = {spec.input_size for spec in specs.values()}
    pictures = {size: [photo.resize((size, size), Image.Resampling.BILINEAR) for photo in photos] for size in sizes}
    for name in about:
        embedded = {p: encoders[name, p].run(pictures[specs[name, p].input_size]).embeddings for p in ("float", "int8")}
        about[name]["int8_cosine"] = cosines(embedded["float"], embedded["int8"])
        log(f"{name}: {json.dumps(about[name])}")
    log(f"timing {len(encoders)} models: batch 1 {args.runs} runs, batch {args.batch} {args.batch_runs} runs")
    medians = medians_ms(encoders, pictures, {1: args.runs, args.batch: args.batch_runs})
    single, batched = medians[1], medians[args.batch]
    unit = single[BASELINE, "float"]
    for name in about:
        ms = {p: {"batch 1": single[name, p], f"batch {args.batch}": batched[name, p]} for p in ("float", "int8")}
        about[name]["ms_per_picture"] = {p: {b: round(v, 2) for b, v in by.items()} for p, by in ms.items()}
        about[name]["x_lite2"] = {p: {b: round(v / unit, 2) for b, v in by.items()} for p, by in ms.items()}
        log(f"{name}: {json.dumps(about[name]['ms_per_picture'])}")
    print(
        json.dumps(
            {
                "unit": f"{BASELINE} float, batch 1: {unit:.2f} ms per picture",
                "threads": args.threads,
                "runs": {"batch 1": args.runs, f"batch {args.batch}": args.batch_runs},
                "photos": len(photos),
                "weights": "random (seeded): cost only",
                "models": about,
            }
        )
    )


if __name__ == "__main__":
    main()

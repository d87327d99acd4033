"""A tuned model to ONNX, with the shipped model's input and outputs, and its check.

`tongkuan.vision.export` builds the shipped models from their packages by name; a tuned
model is a module in memory, so it is exported here, with the same input (`image`, NCHW,
dynamic batch and size), the same outputs (`embedding`, `feature_map`, `logits`), the same
exporter settings (`dynamo=False`, opset 17) and a `model.json` the encoder reads. The rest
of the service then uses it unchanged. As DESIGN.md asks of every export, `export_error`
compares ONNX Runtime against torch on real photos.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tongkuan.adapt.network import TunedNet, to_input

logger = logging.getLogger(__name__)

OUTPUTS = ("embedding", "feature_map", "logits")


def export_tuned_model(model: TunedNet, out_dir: Path, name: str) -> Path:
    """Write `out_dir/model.onnx` and `model.json` for `model` (tuned from `model.base`);
    return `out_dir`. The `.onnx` file is written under a temporary name and renamed, so a
    crash never leaves a half-written model under the real name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    size = model.input_size
    tmp = out_dir / "model.onnx.tmp"
    logger.info("exporting tuned model %s to %s", name, out_dir)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            str(tmp),
            input_names=["image"],
            output_names=list(OUTPUTS),
            dynamic_axes={
                "image": {0: "batch", 2: "height", 3: "width"},
                "embedding": {0: "batch"},
                "feature_map": {0: "batch", 2: "fh", 3: "fw"},
                "logits": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
    tmp.replace(out_dir / "model.onnx")
    spec = {
        "name": name,
        "tuned_from": model.base,
        "input_name": "image",
        "input_size": size,
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "embedding_output": "embedding",
        "feature_map_output": "feature_map",
        "logits_output": "logits",
        "labels": "imagenet-1k",
        "dim": model.dim,
    }
    (out_dir / "model.json").write_text(json.dumps(spec, indent=2))
    return out_dir


def export_error(model: TunedNet, onnx_path: Path, images: list[Image.Image]) -> float:
    """The largest absolute difference between ONNX Runtime and torch over all three outputs
    on `images` (use real photos: a blank input hides most mistakes)."""
    import onnxruntime as ort

    batch = to_input(images, model.input_size)
    with torch.no_grad():
        expected = [t.numpy() for t in model.cpu().eval()(torch.from_numpy(batch))]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUTS), {"image": batch})
    return max(float(np.max(np.abs(e - g))) for e, g in zip(expected, got, strict=True))

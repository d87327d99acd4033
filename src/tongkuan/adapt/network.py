"""The shipped EfficientNet-Lite, cut in two for fine-tuning: a frozen front, a trained back.

The front (stem and the first blocks) stays the ImageNet model's: its features are generic
edges and textures, and freezing it lets training compute it once per augmented view and
cache the result. The back (the remaining blocks and the head convolution) learns the
catalog. BatchNorm stays frozen everywhere (eval mode, no gradient): batches of a few
products have statistics nothing like the catalog's, and the published recipes freeze it.

`TunedNet.forward` returns what the shipped ONNX model returns (embedding, feature map,
logits), so a tuned model drops into the service unchanged. Where the catalog's records carry
categories, the logits are a category head's (one per API category, trained on them) instead
of ImageNet's 1000 classes mapped by hand (`tongkuan.vision.classify`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from tongkuan.vision.encoder import ModelSpec, preprocess
from tongkuan.vision.export import SHIPPED_MODELS, load_torch_model


class TunedNet(torch.nn.Module):
    """EfficientNet-Lite whose blocks from `split` on (and optionally an embedding head) train.

    `head_dim` None keeps the pooled 1280-d feature as the embedding (the service then sees
    the shipped dimension); an int adds a linear head to that many dimensions. `classes` adds
    a category head on the pooled feature whose logits replace ImageNet's.
    """

    def __init__(
        self, backbone: Any, base: str, split: int, head_dim: int | None = None, classes: int | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.base = base
        self.split = split
        self.head = torch.nn.Linear(1280, head_dim) if head_dim else None
        self.classifier = torch.nn.Linear(1280, classes) if classes else None
        if self.classifier is not None:  # starts with no opinion: a flat prior, like no classifier
            torch.nn.init.zeros_(self.classifier.weight)
            torch.nn.init.zeros_(self.classifier.bias)
        self.input_size = SHIPPED_MODELS[base].input_size
        self.eval()
        for name, param in backbone.named_parameters():
            param.requires_grad = self._trains(name)

    def _trains(self, name: str) -> bool:
        if "_bn" in name or name.startswith("_fc"):  # BatchNorm frozen; ImageNet logits kept
            return False
        if name.startswith("_blocks."):
            return int(name.split(".")[1]) >= self.split
        return name.startswith("_conv_head")

    def train(self, mode: bool = True) -> TunedNet:
        """Always eval mode: frozen BatchNorm, and no drop-connect in the blocks."""
        super().train(False)
        return self

    @property
    def dim(self) -> int:
        return self.head.out_features if self.head is not None else 1280

    def trainable(self) -> list[torch.nn.Parameter]:
        """The parameters metric learning updates (the category head has its own rate)."""
        head = {id(p) for p in self.classifier.parameters()} if self.classifier is not None else set()
        return [p for p in self.parameters() if p.requires_grad and id(p) not in head]

    def front(self, images: torch.Tensor) -> torch.Tensor:
        """Stem and the frozen blocks: (n, 3, s, s) normalised pixels to a feature map."""
        net = self.backbone
        x = net._swish(net._bn0(net._conv_stem(images)))
        for idx, block in enumerate(net._blocks[: self.split]):
            x = block(x, drop_connect_rate=self._drop_connect(idx))
        return x  # type: ignore[no-any-return]

    def back(self, features: torch.Tensor) -> torch.Tensor:
        """The trained blocks and the head convolution: the final (n, 1280, h, w) feature map."""
        net = self.backbone
        x = features
        for idx, block in enumerate(net._blocks[self.split :], start=self.split):
            x = block(x, drop_connect_rate=self._drop_connect(idx))
        return net._swish(net._bn1(net._conv_head(x)))  # type: ignore[no-any-return]

    def _drop_connect(self, idx: int) -> float:
        # as `extract_features` passes it; inert in eval mode, kept so the graph matches
        rate = float(self.backbone._global_params.drop_connect_rate or 0.0)
        return rate * idx / len(self.backbone._blocks)

    def embed_features(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding, pooled) from a final feature map; the embedding is not normalised."""
        pooled = fmap.mean(dim=(2, 3))
        return (self.head(pooled) if self.head is not None else pooled), pooled

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """The category head's logits where there is one, else ImageNet's."""
        if self.classifier is not None:
            return self.classifier(pooled)  # type: ignore[no-any-return]
        return self.backbone._fc(pooled)  # type: ignore[no-any-return]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embedding, feature map, logits), the shipped ONNX model's outputs."""
        fmap = self.back(self.front(images))
        embedding, pooled = self.embed_features(fmap)
        return embedding, fmap, self.logits(pooled)


def load_tunable(
    base: str = "efficientnet-lite0",
    frozen_blocks: int | None = None,
    head_dim: int | None = None,
    classes: int | None = None,
) -> TunedNet:
    """The shipped `base` model (loaded as `tongkuan.vision.export` does, ReLU6 kept) ready to
    fine-tune; `frozen_blocks` defaults to the first half of the blocks."""
    backbone = load_torch_model(SHIPPED_MODELS[base])
    blocks = len(backbone._blocks)
    split = blocks // 2 if frozen_blocks is None else frozen_blocks
    if not 0 <= split <= blocks:
        raise ValueError(f"frozen_blocks must be within 0..{blocks}")
    return TunedNet(backbone, base, split, head_dim, classes)


def to_input(images: list[Image.Image], size: int) -> NDArray[np.float32]:
    """RGB images to the model's normalised NCHW input: the service's own preprocessing, so
    training sees exactly what search will feed the exported model."""
    return preprocess(images, ModelSpec(name="tuning", path=Path(), input_size=size, dim=1280))

"""Variants of the service's vision pipeline, measured against it by the quality benchmarks.

They reach into the pipeline (a hook, a module setting, its private steps), which is why
they live here and not in the benchmarks: the pipeline can change behind them while their
names and behaviour stay put.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.domain.boxes import Box
from tongkuan.vision import pipeline
from tongkuan.vision.encoder import OnnxEncoder
from tongkuan.vision.insets import find_inset
from tongkuan.vision.pipeline import CONTEXT_WEIGHT, Description, Vision, cropped, pool_region


class PoolingVision(Vision):
    """The vision pipeline with one backbone pass per picture where it can: a region to crop
    that covers at least `pool_above` of its picture (0: every one) is embedded by pooling
    the whole picture's feature map inside it (`pool_region`) instead of running the model
    on the crop. None: cropped as the service does."""

    def __init__(
        self,
        encoder: OnnxEncoder,
        pool_above: float | None = None,
        context: float = CONTEXT_WEIGHT,
        finder: OnnxEncoder | None = None,
    ) -> None:
        super().__init__(encoder, context, finder=finder)
        self.pool_above = pool_above

    def _pooled(
        self,
        images: list[Image.Image],
        regions: list[Box],
        to_crop: list[int],
        feature_maps: NDArray[np.float32] | None,
    ) -> dict[int, NDArray[np.float32]]:
        if self.pool_above is None or feature_maps is None:
            return {}
        pooled = {}
        for i in to_crop:
            width, height = images[i].size
            if regions[i].area >= self.pool_above * width * height:
                pooled[i] = pool_region(feature_maps[i], regions[i], width, height)
        return pooled


class CheapFirstPass(Vision):
    """Queries (described with `insets`) take their subject and context from `first` (a
    cheaper encoder: a smaller input, 8 bits), then embed the subject, or the whole picture,
    with this vision's encoder; a picture inside the picture is searched for and described
    as the service does. The rest as usual. `boxes`: the region each query embedded."""

    def __init__(self, encoder: OnnxEncoder, first: OnnxEncoder) -> None:
        super().__init__(encoder)
        self.first = first
        self.boxes: list[Box] = []

    def describe(
        self,
        images: list[Image.Image],
        crop: bool = True,
        regions: list[Box | None] | None = None,
        insets: bool = False,
    ) -> list[Description]:
        if not insets:
            return super().describe(images, crop, regions, insets)
        first = self.first.run(images)
        assert first.feature_maps is not None
        described = []
        for i, image in enumerate(images):
            found, chosen = self.subjects(first.feature_maps[i], image.size)
            if cropped(chosen, image.size):
                out = self.encoder.run([image.crop((chosen.x1, chosen.y1, chosen.x2, chosen.y2))])
                embedding = self._with_context(out.embeddings, first.embeddings[i : i + 1])[0]
            else:  # the subject is (nearly) the whole picture: embedded whole, at full size
                out = self.encoder.run([image])
                embedding = out.embeddings[0]
            self.boxes.append(chosen)
            described.append(Description(found, chosen, embedding, self._priors(out.logits, 1)[0]))
        return self._with_insets(images, described, None, first.embeddings, [find_inset(image) for image in images])


@contextmanager
def crop_share(share: float) -> Iterator[None]:
    """While inside, a found subject is cropped to where its shorter side is at least `share`
    of the model's input (0: every subject, as before small pictures were searched whole)."""
    shipped = pipeline.MIN_CROP_SHARE
    pipeline.MIN_CROP_SHARE = share
    try:
        yield
    finally:
        pipeline.MIN_CROP_SHARE = shipped

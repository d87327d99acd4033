"""What the search and ingest paths ask of the models: regions, categories, embeddings."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import CATEGORIES
from tongkuan.vision.classify import label_projection, softmax
from tongkuan.vision.detect import detect_regions
from tongkuan.vision.encoder import OnnxEncoder
from tongkuan.vision.insets import find_inset

# A region that covers this much of the image is searched as the whole image (one inference).
WHOLE_IMAGE_COVERAGE = 0.9
# A subject from the activation map whose shorter side is under this share of the model's
# input is searched as the whole picture: cropping it would only upscale a few pixels of an
# uncertain box (120 px grocery photos, Lite2: rank-1 0.487 cropped, 0.541 whole; 348 px
# photos: 0.554 both ways, docs/benchmarks.md). A picture found inside the picture has a
# border to show for itself and is searched however small.
MIN_CROP_SHARE = 0.5


@dataclass(frozen=True)
class Description:
    """One image as the models see it."""

    regions: tuple[Box, ...]  # every subject found, main first
    searched: Box  # the region that was embedded
    embedding: NDArray[np.float32]
    prior: NDArray[np.float32]  # 14 category probabilities from the classifier
    # a picture found inside the image (a screenshot), described as if given alone; the
    # searcher searches it unless the image is itself a catalog picture
    inset: Description | None = None


class Vision:
    """Detect, classify and embed with one encoder; batch-friendly for ingestion."""

    def __init__(self, encoder: OnnxEncoder) -> None:
        self.encoder = encoder
        self.spec = encoder.spec
        self._projection = label_projection(encoder.spec.labels)

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def min_crop_side(self) -> int:
        """The shortest side, in pixels, of a subject worth cropping to."""
        return int(MIN_CROP_SHARE * self.spec.input_size)

    def _subject(self, boxes: tuple[Box, ...], full: Box) -> Box:
        """The main subject, unless it is too small to crop to (then the whole picture)."""
        main = boxes[0]
        return main if min(main.x2 - main.x1, main.y2 - main.y1) >= self.min_crop_side else full

    def describe(
        self,
        images: list[Image.Image],
        crop: bool = True,
        regions: list[Box | None] | None = None,
        insets: bool = False,
    ) -> list[Description]:
        """Describe a batch: detect subjects on each whole image, then embed the chosen region.

        The chosen region is the caller's (`regions[i]`) if given, else the main subject if
        `crop` and it is big enough to crop to (`min_crop_side`), else the whole image. With
        `insets` (queries: screenshots, photos of a screen), a picture found inside an image
        is its main subject and is described as if it had been given alone, as a catalog
        picture is at ingestion.
        """
        if not images:
            return []
        whole = self.encoder.run(images)
        found: list[tuple[Box, ...]] = []
        chosen: list[Box] = []
        for i, image in enumerate(images):
            width, height = image.size
            full = Box(0, width, 0, height)
            boxes = (
                tuple(detect_regions(whole.feature_maps[i], width, height))
                if whole.feature_maps is not None
                else (full,)
            )
            found.append(boxes)
            given = regions[i] if regions else None
            chosen.append(given or (self._subject(boxes, full) if crop else full))
        embeddings = whole.embeddings.copy()
        priors = self._priors(whole.logits, len(images))
        to_crop = [
            i
            for i, (img, box) in enumerate(zip(images, chosen, strict=True))
            if box.area < WHOLE_IMAGE_COVERAGE * img.size[0] * img.size[1]
        ]
        if to_crop:
            crops = [images[i].crop((chosen[i].x1, chosen[i].y1, chosen[i].x2, chosen[i].y2)) for i in to_crop]
            out = self.encoder.run(crops)
            embeddings[to_crop] = out.embeddings
            priors[to_crop] = self._priors(out.logits, len(crops))
        described = [Description(found[i], chosen[i], embeddings[i], priors[i]) for i in range(len(images))]
        if insets and crop:
            described = self._with_insets(images, described, regions)
        return described

    def _with_insets(
        self, images: list[Image.Image], described: list[Description], regions: list[Box | None] | None
    ) -> list[Description]:
        """Each description with, where a picture is found inside the image, the inset's own."""
        wanted = [i for i in range(len(images)) if not (regions and regions[i])]  # a caller's region wins
        found = {i: box for i in wanted if (box := find_inset(images[i])) is not None}
        if not found:
            return described
        # cropped to its own subject as an uploaded picture is, so a catalog shot shown in a
        # screenshot is embedded as it was at ingestion
        alone = self.describe([images[i].crop((box.x1, box.y1, box.x2, box.y2)) for i, box in found.items()])
        result = list(described)
        for (i, box), inner in zip(found.items(), alone, strict=True):
            others = tuple(r for r in described[i].regions if r.iou(box) < 0.6)
            result[i] = replace(described[i], inset=Description((box, *others), box, inner.embedding, inner.prior))
        return result

    def _priors(self, logits: NDArray[np.float32] | None, n: int) -> NDArray[np.float32]:
        if logits is None or self._projection is None:
            # No classifier: a flat prior, so the neighbour vote decides.
            return np.full((n, len(CATEGORIES)), 1.0 / len(CATEGORIES), dtype=np.float32)
        return (softmax(logits.astype(np.float32)) @ self._projection).astype(np.float32)

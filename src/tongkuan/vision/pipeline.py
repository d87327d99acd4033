"""What the search and ingest paths ask of the models: regions, categories, embeddings."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import CATEGORIES
from tongkuan.errors import CannotSearchWords
from tongkuan.vision.classify import category_prompts, label_projection, softmax, zero_shot_prior
from tongkuan.vision.detect import detect_regions
from tongkuan.vision.encoder import OnnxEncoder, l2_normalise
from tongkuan.vision.insets import find_inset
from tongkuan.vision.text import TextEncoder

# The share of the whole picture's embedding in a cropped main subject's (the rest is the
# crop's): the whole picture is embedded anyway to find the subject, and its context helps.
# Grocery photos, Lite2, bench/quality.py, R@1 without context -> with 0.3: retailer catalog
# with its whitening 0.730 -> 0.753, listings with their pairs' whitening 0.628 -> 0.672,
# listings unwhitened 0.601 -> 0.581, studio shots 0.385 -> 0.392 (0.5 gave 0.764, 0.666,
# 0.561 and 0.385 on the stored vectors). Queries described so against a catalog embedded
# without context lose nothing (listings 0.601 -> 0.611, retailer 0.733 -> 0.736). A region
# the caller chose is embedded alone.
CONTEXT_WEIGHT = 0.3
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
    # searcher searches it unless the image is itself a catalog picture. Where the caller
    # chose a region, it is that region's description with the inset first among the
    # regions: the region is searched either way, and the main subject stays what it is
    # without a region, so the caller can go back to it.
    inset: Description | None = None
    # where the caller chose a region: the embedding the image has without one, which
    # decides (as without the region) whether the image is itself a catalog picture
    plain: NDArray[np.float32] | None = None


class Vision:
    """Detect, classify and embed; batch-friendly for ingestion.

    The encoder embeds. Where it has no feature map of its own (a CLIP, SigLIP or DINOv2-class
    embedder), `finder`, a shipped model, finds the subjects on the whole picture and gives
    the category prior; the encoder then embeds the chosen region as it would its own."""

    def __init__(
        self,
        encoder: OnnxEncoder,
        context: float = CONTEXT_WEIGHT,
        finder: OnnxEncoder | None = None,
        text: TextEncoder | None = None,
    ) -> None:
        self.encoder = encoder
        self.text = text  # the model's text tower, where it has one: it also names the categories
        self._categories: NDArray[np.float32] | None = None
        self.context = context
        self.spec = encoder.spec
        self.finder = finder if encoder.spec.feature_map_output is None else None
        self._projection = label_projection(encoder.spec.labels)
        self._finder_projection = None if self.finder is None else label_projection(self.finder.spec.labels)
        # searches for a picture inside the picture, run while the model describes it
        self._beside = ThreadPoolExecutor(max_workers=2, thread_name_prefix="inset-search")

    def _category_vectors(self) -> NDArray[np.float32]:
        """Each category's prompts embedded by the text tower and averaged (once per model)."""
        if self._categories is None:
            assert self.text is not None
            prompts = category_prompts()
            embedded = self.text.embed([prompt for _, prompt in prompts])
            owners = np.array([CATEGORIES.index(category) for category, _ in prompts])
            self._categories = l2_normalise(
                np.stack([embedded[owners == i].mean(axis=0) for i in range(len(CATEGORIES))])
            )
        return self._categories

    def describe_words(self, words: str) -> Description:
        """Words as a query: their vector in the pictures' space from the model's text tower
        (no regions, a flat category prior: the neighbours' vote decides). Raises
        `CannotSearchWords` where the model has no text tower."""
        if self.text is None:
            raise CannotSearchWords(
                f"model {self.spec.name} has no text tower: search by words needs a CLIP- or SigLIP-class model"
            )
        embedding = self.text.embed([words])[0]
        flat = np.full(len(CATEGORIES), 1.0 / len(CATEGORIES), dtype=np.float32)
        return Description((), Box(0, 0, 0, 0), embedding, flat)

    @property
    def dim(self) -> int:
        return self.spec.dim

    def batch(self, cpu_batch: int) -> int:
        """Pictures per batch for bulk embedding on the device the model runs on."""
        return self.encoder.batch(cpu_batch)

    @property
    def min_crop_side(self) -> int:
        """The shortest side, in pixels, of a subject worth cropping to."""
        return int(MIN_CROP_SHARE * self.spec.input_size)

    def _subject(self, boxes: tuple[Box, ...], full: Box) -> Box:
        """The main subject, unless it is too small to crop to (then the whole picture)."""
        main = boxes[0]
        return main if min(main.x2 - main.x1, main.y2 - main.y1) >= self.min_crop_side else full

    def subjects(self, feature_map: NDArray[np.float32] | None, size: tuple[int, int]) -> tuple[tuple[Box, ...], Box]:
        """Every subject a picture's activation map shows, main first (the whole picture where
        the model gives no map), and the region embedded where the caller chose none: the main
        subject, or the whole picture where that is too small to crop to."""
        width, height = size
        full = Box(0, width, 0, height)
        boxes = tuple(detect_regions(feature_map, width, height)) if feature_map is not None else (full,)
        return boxes, self._subject(boxes, full)

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
        picture is at ingestion; with a caller's region, the region is described, and the
        inset is still found so that it stays the main subject among the regions.
        """
        if not images:
            return []
        searches = None
        if insets and crop:  # the inset search needs only the pixels: it runs beside the first pass
            for image in images:
                image.load()  # a file opened lazily loads here, not in two threads at once
            searches = [self._beside.submit(find_inset, image) for image in images]
        whole = self.encoder.run(images)
        maps, priors = whole.feature_maps, self._priors(whole.logits, len(images))
        if self.finder is not None:  # the embedder has no map: the shipped model finds the subjects
            seen = self.finder.run(images)
            maps, priors = seen.feature_maps, self._priors(seen.logits, len(images), self._finder_projection)
        found: list[tuple[Box, ...]] = []
        chosen: list[Box] = []
        for i, image in enumerate(images):
            boxes, subject = self.subjects(None if maps is None else maps[i], image.size)
            found.append(boxes)
            given = regions[i] if regions else None
            chosen.append(given or (subject if crop else Box(0, image.size[0], 0, image.size[1])))
        embeddings = whole.embeddings.copy()
        to_crop = [i for i, (img, box) in enumerate(zip(images, chosen, strict=True)) if cropped(box, img.size)]
        pooled = self._pooled(images, chosen, to_crop, whole.feature_maps)
        for i, embedding in pooled.items():
            embeddings[i] = embedding
        to_crop = [i for i in to_crop if i not in pooled]
        if to_crop:
            crops = [images[i].crop((chosen[i].x1, chosen[i].y1, chosen[i].x2, chosen[i].y2)) for i in to_crop]
            out = self.encoder.run(crops)
            own = [k for k, i in enumerate(to_crop) if not (regions and regions[i])]  # subjects found here
            embeddings[to_crop] = out.embeddings
            mine = [to_crop[k] for k in own]
            embeddings[mine] = self._with_context(out.embeddings[own], whole.embeddings[mine])
            if out.logits is not None:  # the crop's own prior; else the whole picture's stays
                priors[to_crop] = self._priors(out.logits, len(crops))
        if self.text is not None:  # the model's own words for the categories, instead of ImageNet's
            priors = zero_shot_prior(embeddings, self._category_vectors())
        described = [Description(found[i], chosen[i], embeddings[i], priors[i]) for i in range(len(images))]
        if searches is not None:
            insets_found = [_inset_of(image, search) for image, search in zip(images, searches, strict=True)]
            described = self._with_insets(images, described, regions, whole.embeddings, insets_found)
        return described

    def _with_insets(
        self,
        images: list[Image.Image],
        described: list[Description],
        regions: list[Box | None] | None,
        whole: NDArray[np.float32],
        insets: list[Box | None],
    ) -> list[Description]:
        """Each description with, where a picture (`insets[i]`) was found inside the image,
        the inset's own (or, where the caller chose a region, the inset as the main subject)."""
        found = {i: box for i, box in enumerate(insets) if box is not None}
        if not found:
            return described
        asked = {i for i in found if regions and regions[i]}
        # cropped to its own subject as an uploaded picture is, so a catalog shot shown in a
        # screenshot is embedded as it was at ingestion
        alone = [i for i in found if i not in asked]
        inner = self.describe([images[i].crop(_corners(found[i])) for i in alone])
        plain = self._plain_embeddings(images, [(i, described[i].regions) for i in sorted(asked)], whole)
        result = list(described)
        for i, box in found.items():
            others = tuple(r for r in described[i].regions if r.iou(box) < 0.6)
            if i in asked:
                inset = replace(described[i], regions=(box, *others))
                result[i] = replace(described[i], inset=inset, plain=plain[i])
            else:
                own = inner[alone.index(i)]
                result[i] = replace(described[i], inset=Description((box, *others), box, own.embedding, own.prior))
        return result

    def _plain_embeddings(
        self, images: list[Image.Image], subjects: list[tuple[int, tuple[Box, ...]]], whole: NDArray[np.float32]
    ) -> dict[int, NDArray[np.float32]]:
        """The embedding each image has without a region (its subject's, or its own), for the
        images given by index with their subjects."""
        plain: dict[int, NDArray[np.float32]] = {}
        to_crop: list[tuple[int, Box]] = []
        for i, boxes in subjects:
            width, height = images[i].size
            subject = self._subject(boxes, Box(0, width, 0, height))
            if cropped(subject, images[i].size):
                to_crop.append((i, subject))
            else:
                plain[i] = whole[i]
        if to_crop:
            out = self.encoder.run([images[i].crop(_corners(box)) for i, box in to_crop])
            mixed = self._with_context(out.embeddings, whole[[i for i, _ in to_crop]])
            plain.update({i: mixed[k] for k, (i, _) in enumerate(to_crop)})
        return plain

    def _pooled(
        self,
        images: list[Image.Image],
        regions: list[Box],
        to_crop: list[int],
        feature_maps: NDArray[np.float32] | None,
    ) -> dict[int, NDArray[np.float32]]:
        """Embeddings, by position, of the regions in `to_crop` that are taken from the first
        pass instead of cropped and run again: none here, every one is cropped (a subclass
        may pool the feature map inside a region, as `tongkuan.bench` does to measure it)."""
        return {}

    def _with_context(self, subjects: NDArray[np.float32], wholes: NDArray[np.float32]) -> NDArray[np.float32]:
        """Cropped subjects' embeddings with `context` of their whole pictures' mixed in."""
        if not self.context or not len(subjects):
            return subjects
        return l2_normalise((1 - self.context) * subjects + self.context * wholes)

    def _priors(
        self, logits: NDArray[np.float32] | None, n: int, projection: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        projection = self._projection if projection is None else projection
        if logits is None or projection is None:
            # No classifier: a flat prior, so the neighbour vote decides.
            return np.full((n, len(CATEGORIES)), 1.0 / len(CATEGORIES), dtype=np.float32)
        return (softmax(logits.astype(np.float32)) @ projection).astype(np.float32)


def cropped(region: Box, size: tuple[int, int]) -> bool:
    """Whether `region` of a picture of `size` is embedded as a crop: one that covers nearly
    the whole picture is embedded as the whole picture (one inference instead of two)."""
    return region.area < WHOLE_IMAGE_COVERAGE * size[0] * size[1]


def _inset_of(image: Image.Image, search: Future[Box | None]) -> Box | None:
    """The inset search's result, or the search run here if no worker has taken it yet (under
    load the workers are busy with other requests' searches: waiting for them gains nothing)."""
    return find_inset(image) if search.cancel() else search.result()


def _corners(box: Box) -> tuple[int, int, int, int]:
    """PIL's crop box (left, upper, right, lower) of a region."""
    return (box.x1, box.y1, box.x2, box.y2)


def pool_region(feature_map: NDArray[np.float32], box: Box, width: int, height: int) -> NDArray[np.float32]:
    """The L2-normalised mean of a (C, h, w) feature map over `box` (in an image of `width` x
    `height`), each cell weighted by how much of it the box covers: the embedding of the
    region as the model's own average pooling would give it, without another inference."""
    _, rows, cols = feature_map.shape
    across = _coverage(box.x1, box.x2, width, cols)
    down = _coverage(box.y1, box.y2, height, rows)
    weights = np.outer(down, across)
    pooled = np.tensordot(feature_map, weights, axes=([1, 2], [0, 1])) / max(float(weights.sum()), 1e-12)
    norm = float(np.linalg.norm(pooled))
    return (pooled / max(norm, 1e-12)).astype(np.float32)


def _coverage(start: int, stop: int, size: int, cells: int) -> NDArray[np.float64]:
    """How much of each of `cells` equal cells over [0, size) the span [start, stop) covers."""
    edges = np.linspace(0.0, float(size), cells + 1)
    covered: NDArray[np.float64] = np.clip(np.minimum(edges[1:], stop) - np.maximum(edges[:-1], start), 0.0, None)
    return covered / (size / cells)

"""Choosing the region to embed: small pictures are searched whole, not upscaled crops."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.utils.composites import composites
from tongkuan.domain.boxes import Box
from tongkuan.vision import pipeline
from tongkuan.vision.encoder import OnnxEncoder
from tongkuan.vision.insets import find_inset
from tongkuan.vision.pipeline import CONTEXT_WEIGHT, Vision, pool_region
from tongkuan.vision.registry import resolve_model

PHOTO = "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"


def test_a_small_picture_is_searched_whole_and_a_large_one_by_its_subject(data_root: Path, model_cache: Path) -> None:
    vision = Vision(OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1))
    photo = Image.open(data_root / PHOTO).convert("RGB")
    small = photo.resize((120, 120), Image.Resampling.BILINEAR)
    large = photo.resize((1000, 1000), Image.Resampling.BILINEAR)
    cropped, whole = vision.describe([small], crop=True)[0], vision.describe([small], crop=False)[0]
    assert cropped.searched == Box(0, 120, 0, 120)
    assert np.allclose(cropped.embedding, whole.embedding)
    assert max(r.x2 - r.x1 for r in cropped.regions) < vision.min_crop_side  # subjects were found, too small
    big = vision.describe([large], crop=True)[0]
    assert big.searched == big.regions[0] and big.searched != Box(0, 1000, 0, 1000)


def test_a_region_the_caller_gives_is_searched_however_small(data_root: Path, model_cache: Path) -> None:
    vision = Vision(OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1))
    photo = Image.open(data_root / PHOTO).convert("RGB")
    region = Box(100, 160, 100, 160)
    assert vision.describe([photo], regions=[region])[0].searched == region


def test_pooling_the_whole_feature_map_is_the_models_own_pooling(data_root: Path, model_cache: Path) -> None:
    encoder = OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1)
    photo = Image.open(data_root / PHOTO).convert("RGB")
    out = encoder.run([photo])
    assert out.feature_maps is not None
    width, height = photo.size
    whole = pool_region(out.feature_maps[0], Box(0, width, 0, height), width, height)
    assert np.allclose(whole, out.embeddings[0], atol=1e-5)


def test_a_found_subject_carries_some_of_its_whole_picture_and_a_given_region_none(
    data_root: Path, model_cache: Path
) -> None:
    encoder = OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1)
    photo = Image.open(data_root / PHOTO).convert("RGB").resize((1000, 1000), Image.Resampling.BILINEAR)
    found = Vision(encoder).describe([photo])[0]
    subject = found.searched
    assert subject != Box(0, 1000, 0, 1000)
    crop = encoder.run([photo.crop((subject.x1, subject.y1, subject.x2, subject.y2))]).embeddings[0]
    whole = encoder.run([photo]).embeddings[0]
    mixed = (1 - CONTEXT_WEIGHT) * crop + CONTEXT_WEIGHT * whole
    assert np.allclose(found.embedding, mixed / np.linalg.norm(mixed), atol=1e-5)
    assert np.allclose(Vision(encoder, context=0).describe([photo])[0].embedding, crop, atol=1e-5)
    given = Vision(encoder).describe([photo], regions=[subject])[0]  # the same box, chosen by the caller
    assert np.allclose(given.embedding, crop, atol=1e-5)


def test_with_a_chosen_region_the_plain_embedding_is_the_one_the_picture_has_without_it(
    data_root: Path, model_cache: Path
) -> None:
    # a screenshot-like scene: the region decides what is searched, the plain embedding
    # (context included) whether the picture is itself a catalog picture
    vision = Vision(OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1))
    scene = next(s for s in composites(data_root, 20, seed=5) if find_inset(s.image) is not None)
    width, height = scene.image.size
    region = Box(0, width // 2, 0, height // 2)
    chosen = vision.describe([scene.image], regions=[region], insets=True)[0]
    assert chosen.plain is not None and chosen.searched == region
    without = vision.describe([scene.image])[0].embedding
    assert np.allclose(chosen.plain, without, atol=1e-5)


def test_the_inset_search_runs_while_the_model_describes_the_picture(
    data_root: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the search for a picture inside the picture needs only the pixels, so it is not left
    # waiting for the model (a Lite2 pass and the search take about as long as each other)
    encoder = OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1)
    scene = next(s for s in composites(data_root, 20, seed=5) if find_inset(s.image) is not None)
    alone = Vision(encoder).describe([scene.image], insets=True)[0]
    searching = threading.Event()

    def search(image: Image.Image) -> Box | None:
        searching.set()
        return find_inset(image)

    original = encoder.run

    def run(images: list[Image.Image]) -> object:
        overlapped.append(searching.wait(timeout=5))
        return original(images)

    overlapped: list[bool] = []
    monkeypatch.setattr(pipeline, "find_inset", search)
    encoder.run = run  # type: ignore[method-assign,assignment]
    described = Vision(encoder).describe([scene.image], insets=True)[0]
    assert overlapped[0], "the first pass of the model waited for nothing: the inset search had not started"
    assert described.inset is not None and alone.inset is not None
    assert described.inset.searched == alone.inset.searched
    assert np.allclose(described.inset.embedding, alone.inset.embedding, atol=1e-6)


def test_a_picture_not_loaded_yet_is_searched_for_an_inset_as_a_loaded_one(data_root: Path, model_cache: Path) -> None:
    # a file Pillow has only opened is read on first use: once, before the inset search and
    # the model share it
    vision = Vision(OnnxEncoder(resolve_model("efficientnet-lite0", model_cache), threads=1))
    scene = next(s for s in composites(data_root, 20, seed=5) if find_inset(s.image) is not None)
    saved = io.BytesIO()
    scene.image.save(saved, format="PNG")
    lazy = Image.open(saved)
    loaded = vision.describe([scene.image], insets=True)[0]
    described = vision.describe([lazy], insets=True)[0]
    assert described.inset is not None and loaded.inset is not None
    assert described.inset.searched == loaded.inset.searched
    assert np.allclose(described.embedding, loaded.embedding, atol=1e-6)

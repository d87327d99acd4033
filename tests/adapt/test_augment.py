"""Each shopper-photo augmentation on a real grocery photo: a new RGB picture, reproducible from
its seed, visibly different from the original where it should be."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tongkuan.adapt import augment

AUGMENTATIONS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "random_resized_crop": augment.random_resized_crop,
    "perspective": augment.perspective,
    "rotate": augment.rotate,
    "downscale": augment.downscale,
    "blur": augment.blur,
    "add_noise": augment.add_noise,
    "jitter_colour": augment.jitter_colour,
    "jpeg": augment.jpeg,
    "occlude": augment.occlude,
}


@pytest.fixture(scope="module")
def photo(grocery_rows: list[dict[str, str]]) -> Image.Image:
    row = next(r for r in grocery_rows if r["split"] == "train")
    with Image.open(row["file"]) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def studio_shot(grocery_rows: list[dict[str, str]]) -> Image.Image:
    row = next(r for r in grocery_rows if r["split"] == "catalog")
    with Image.open(row["file"]) as image:
        return image.convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b.resize(a.size), np.float32)).mean())


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_each_augmentation_changes_a_real_photo_reproducibly(name: str, photo: Image.Image) -> None:
    apply = AUGMENTATIONS[name]
    first = apply(photo, np.random.default_rng(3))
    again = apply(photo, np.random.default_rng(3))
    assert first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert difference(photo, first) > 0.2
    if name != "random_resized_crop":
        assert first.size == photo.size


def test_a_crop_keeps_at_least_a_third_of_the_picture(photo: Image.Image) -> None:
    for seed in range(20):
        crop = augment.random_resized_crop(photo, np.random.default_rng(seed))
        assert crop.width * crop.height >= 0.34 * photo.width * photo.height


def test_downscaling_loses_detail_like_a_small_picture(photo: Image.Image) -> None:
    small = augment.downscale(photo, np.random.default_rng(0), smallest=100)
    assert small.size == photo.size
    # high frequencies are gone: the picture is smoother than the original
    assert (
        np.abs(np.diff(np.asarray(small, np.float32), axis=1)).mean()
        < np.abs(np.diff(np.asarray(photo, np.float32), axis=1)).mean()
    )


def test_a_studio_shot_is_pasted_onto_a_real_background(studio_shot: Image.Image, photo: Image.Image) -> None:
    pasted = augment.paste_on_background(studio_shot, photo, np.random.default_rng(1))
    assert pasted.size == studio_shot.size
    assert difference(studio_shot, pasted) > 5


def test_a_shopper_view_is_reproducible_and_varies_with_the_seed(photo: Image.Image, studio_shot: Image.Image) -> None:
    views = [augment.shopper_view(studio_shot, np.random.default_rng(s), [photo]) for s in (0, 0, 1)]
    assert np.array_equal(np.asarray(views[0]), np.asarray(views[1]))
    assert views[0].size != views[2].size or not np.array_equal(np.asarray(views[0]), np.asarray(views[2]))


def test_augmentations_accept_other_modes(tmp_path: Path) -> None:
    grey = Image.new("L", (64, 48), 128)
    assert augment.shopper_view(grey, np.random.default_rng(0)).mode == "RGB"

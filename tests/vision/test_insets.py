"""Pictures inside the picture: found in real scenes, rarely imagined in real photos, never
in studio shots, and robust to odd images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.utils.composites import composites
from tests.utils.data import read_rows
from tongkuan.domain.boxes import Box
from tongkuan.vision.insets import _can_enclose, find_inset


def found_rate(images: list[Image.Image]) -> float:
    return float(np.mean([find_inset(image) is not None for image in images]))


def test_shots_pasted_into_real_photos_are_found(data_root: Path) -> None:
    scenes = composites(data_root, 100, seed=23)  # not the benchmark's scenes
    iou = np.array([box.iou(s.box) if (box := find_inset(s.image)) else 0.0 for s in scenes])
    print(f"insets found with IoU >= 0.5: {np.mean(iou >= 0.5):.3f}")
    assert np.mean(iou >= 0.5) >= 0.75


def test_photos_without_an_inset_rarely_yield_one(data_root: Path) -> None:
    grocery = [r for r in read_rows(data_root / "grocery_store" / "labels.csv") if r["split"] == "val"][::3]
    clothing = read_rows(data_root / "clothing_dataset" / "labels.csv")[::20]
    photos = [Image.open(data_root / "grocery_store" / r["path"]) for r in grocery]
    photos += [Image.open(data_root / "clothing_dataset" / r["path"]) for r in clothing]
    rate = found_rate(photos)
    print(f"photos taken for insets: {rate:.3f} of {len(photos)}")
    assert rate <= 0.06


def test_studio_shots_are_not_searched_for_insets(data_root: Path) -> None:
    """Panels printed on cartons look like insets; a one-colour border says studio shot."""
    rows = read_rows(data_root / "grocery_store" / "labels.csv")
    shots = [Image.open(data_root / "grocery_store" / r["path"]) for r in rows if r["split"] == "catalog"]
    fashion = read_rows(data_root / "fashion_product_images_small" / "labels.csv")[::100]
    shots += [Image.open(data_root / "fashion_product_images_small" / r["path"]) for r in fashion]
    assert found_rate(shots) <= 0.02


def test_an_inset_touching_the_image_border_is_found(data_root: Path) -> None:
    rows = read_rows(data_root / "clothing_dataset" / "labels.csv")
    scene = Image.open(data_root / "clothing_dataset" / rows[40]["path"]).convert("RGB").resize((600, 800))
    shot = Image.open(data_root / "grocery_store" / "iconic" / "Arla-Standard-Milk_Iconic.jpg").convert("RGB")
    scene.paste(shot.resize((260, 260)), (600 - 260, 300))  # flush with the right edge
    box = find_inset(scene)
    assert box is not None and box.iou(Box(340, 600, 300, 560)) >= 0.8


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (1, 1)),
        Image.new("RGB", (5, 400), (200, 10, 10)),
        Image.new("RGB", (640, 480), (255, 255, 255)),
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)),
        Image.new("L", (300, 200), 128),
    ],
    ids=["1x1", "sliver", "blank", "noise", "grey"],
)
def test_odd_images_have_no_inset_and_raise_nothing(image: Image.Image) -> None:
    assert find_inset(image) is None


def test_a_large_photo_is_searched_at_the_same_scale(data_root: Path) -> None:
    scene = next(s for s in composites(data_root, 12, seed=5) if find_inset(s.image) is not None)
    found = find_inset(scene.image)
    assert found is not None
    large = scene.image.resize((scene.image.width * 6, scene.image.height * 6))  # about 12 megapixels
    box = find_inset(large)
    assert box is not None
    assert box.iou(Box(found.x1 * 6, found.x2 * 6, found.y1 * 6, found.y2 * 6)) >= 0.9


def test_lines_that_cannot_make_three_sides_of_a_rectangle_end_the_search_early() -> None:
    # a shelf: long lines across the whole picture one way only, and a frame's three sides
    shelf = np.full((300, 400, 3), 200, dtype=np.uint8)
    shelf[100:104] = 40
    shelf[200:204] = 40
    framed = np.repeat(np.linspace(90, 250, 400, dtype=np.uint8)[None, :, None], 300, axis=0).repeat(3, axis=2)
    framed[60:240, 100:300] = 20  # a dark picture inside a shaded one (a ring of one colour is a studio shot)
    assert find_inset(Image.fromarray(shelf)) is None
    assert not _can_enclose(np.array([100, 200]), np.array([], dtype=np.int64), 300, 400)
    assert _can_enclose(np.array([60, 240]), np.array([100]), 300, 400)  # three sides: enough to look further
    assert not _can_enclose(np.array([0, 60]), np.array([0, 100]), 300, 400)  # lines on the border count for none
    found = find_inset(Image.fromarray(framed))
    assert found is not None and found.iou(Box(100, 300, 60, 240)) > 0.9

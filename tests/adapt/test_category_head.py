"""The category head: trained where the records carry categories, exported with its labels,
and read by the service as a prior over the 14 categories (on real clothing photos)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tongkuan.adapt.examples import examples_from_files
from tongkuan.adapt.export import export_error, export_tuned_model
from tongkuan.adapt.network import to_input
from tongkuan.adapt.progress import TuneResult
from tongkuan.adapt.recipe import Recipe
from tongkuan.adapt.training import tune
from tongkuan.domain.categories import CATEGORIES, CATEGORY_BY_NAME, CATEGORY_POSITION
from tongkuan.vision.classify import CATEGORY_HEAD
from tongkuan.vision.encoder import ModelSpec, OnnxEncoder
from tongkuan.vision.pipeline import Vision

TAUGHT = ("tops", "bottoms", "shoes")
PER_CATEGORY = 12
SETTINGS = Recipe(
    epochs=3, cached_views=3, groups_per_batch=6, views_per_group=2, min_products=5, holdback=0.25,
    patience=5, threads=1, warmup_steps=2, min_category_pictures=5, lr_classifier=1e-2,
)  # fmt: skip


def position(row: dict[str, str]) -> int:
    return CATEGORY_POSITION[CATEGORY_BY_NAME[row["service_category"]]]


@pytest.fixture(scope="module")
def rows(clothing_rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """PER_CATEGORY photos of each taught category, one product each (the listings shape)."""
    return [r for c in TAUGHT for r in [r for r in clothing_rows if r["service_category"] == c][:PER_CATEGORY]]


@pytest.fixture(scope="module")
def tuned(rows: list[dict[str, str]]) -> TuneResult:
    paths = [Path(r["file"]) for r in rows]
    examples = examples_from_files(paths, [r["image_id"] for r in rows], categories=[position(r) for r in rows])
    return tune(examples, SETTINGS, progress=False)


def test_categories_in_the_records_train_a_head_that_learns_them(tuned: TuneResult, rows: list[dict[str, str]]) -> None:
    assert tuned.model.classifier is not None
    assert all(0.0 <= h.held_back_category <= 1.0 for h in tuned.history)
    assert 0.0 <= tuned.held_back_category_before <= 1.0 and 0.0 <= tuned.held_back_category_after <= 1.0
    # the photos it was trained on: the head's top-1 is far above chance (1 in 3)
    images = [Image.open(r["file"]).convert("RGB") for r in rows]
    with torch.no_grad():
        _, _, logits = tuned.model(torch.from_numpy(to_input(images, tuned.model.input_size)))
    predicted = logits.argmax(dim=1).numpy()
    assert logits.shape == (len(rows), len(CATEGORIES))
    assert np.mean(predicted == np.array([position(r) for r in rows])) >= 0.7


def test_the_exported_head_is_the_services_prior(tuned: TuneResult, rows: list[dict[str, str]], tmp_path: Path) -> None:
    out = export_tuned_model(tuned.model, tmp_path / "tuned", "clothing-tuned")
    assert json.loads((out / "model.json").read_text())["labels"] == CATEGORY_HEAD
    images = [Image.open(r["file"]).convert("RGB") for r in rows[::4]]
    assert export_error(tuned.model, out / "model.onnx", images) < 1e-4
    vision = Vision(OnnxEncoder(ModelSpec.from_json(out / "model.json"), threads=1))
    priors = np.stack([d.prior for d in vision.describe(images)])
    assert priors.shape == (len(images), len(CATEGORIES))
    np.testing.assert_allclose(priors.sum(axis=1), 1.0, atol=1e-5)
    truth = np.array([position(r) for r in rows[::4]])
    assert np.mean(priors.argmax(axis=1) == truth) >= 0.7


def test_records_without_categories_keep_imagenets_classifier(rows: list[dict[str, str]]) -> None:
    few = rows[:: PER_CATEGORY // 3]  # too few pictures per category to learn one from
    paths = [Path(r["file"]) for r in few]
    settings = Recipe(**{**SETTINGS.__dict__, "epochs": 1, "min_category_pictures": 50})
    examples = examples_from_files(paths, [r["image_id"] for r in few], categories=[position(r) for r in few])
    result = tune(examples, settings, progress=False)
    assert result.model.classifier is None
    assert all(h.held_back_category == -1.0 for h in result.history)
    assert result.held_back_category_before == result.held_back_category_after == -1.0

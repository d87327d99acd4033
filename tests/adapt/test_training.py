"""A CI-sized fine-tuning run on real grocery photos (Lite0, 1 thread): the loss falls, the
held-back recall is measured, an interrupted run resumes from its checkpoint, a catalog too
small is refused with the reason, and the ONNX export matches torch on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tongkuan.adapt.examples import examples_from_files
from tongkuan.adapt.export import export_error, export_tuned_model
from tongkuan.adapt.losses import cosface_loss, likely_twins
from tongkuan.adapt.network import load_tunable
from tongkuan.adapt.progress import TuneResult
from tongkuan.adapt.recipe import Recipe
from tongkuan.adapt.sampling import balanced_batches, twin_groups
from tongkuan.adapt.training import tune
from tongkuan.adapt.views import ViewCache
from tongkuan.errors import CannotLearn
from tongkuan.vision.encoder import ModelSpec, OnnxEncoder

PRODUCTS, PICTURES = 6, 4
SETTINGS = Recipe(
    epochs=3, cached_views=3, groups_per_batch=3, views_per_group=4, min_products=5, holdback=0.3,
    patience=5, threads=1, warmup_steps=2, refresh_views_every=1,
)  # fmt: skip


@pytest.fixture(scope="module")
def rows(grocery_rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """PICTURES train photos of each of PRODUCTS products spread over the classes."""
    train = [r for r in grocery_rows if r["split"] == "train"]
    classes = sorted({r["class_id"] for r in train}, key=int)[:: 81 // PRODUCTS][:PRODUCTS]
    return [r for c in classes for r in [r for r in train if r["class_id"] == c][:PICTURES]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tune") / "tune.pt"


@pytest.fixture(scope="module")
def first_run(rows: list[dict[str, str]], checkpoint: Path) -> TuneResult:
    """Two of the three epochs, as if the run were interrupted there."""
    examples = examples_from_files([Path(r["file"]) for r in rows], [r["class_id"] for r in rows])
    partial = Recipe(**{**SETTINGS.__dict__, "epochs": 2})
    torch.manual_seed(0)
    return tune(examples, partial, checkpoint, progress=False)


def test_the_loss_falls_and_held_back_recall_is_reported(first_run: TuneResult) -> None:
    assert len(first_run.history) == 2
    assert first_run.history[-1].probe_loss < first_run.probe_loss_before
    assert len(first_run.step_losses) == 2 * 2  # 16 training pictures, batches of 12
    assert 0 <= first_run.held_back_before <= first_run.held_back_after <= 1
    assert first_run.held_back_metric == "photos"


def test_an_interrupted_run_resumes_from_its_checkpoint(
    first_run: TuneResult, rows: list[dict[str, str]], checkpoint: Path
) -> None:
    examples = examples_from_files([Path(r["file"]) for r in rows], [r["class_id"] for r in rows])
    # the settings differ in `epochs` only: the fingerprint must ignore it to resume
    resumed = tune(examples, SETTINGS, checkpoint, progress=False)
    assert resumed.resumed_from == 2
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first_run.history


def test_a_catalog_with_too_few_products_is_refused(rows: list[dict[str, str]]) -> None:
    few = [r for r in rows if r["class_id"] in {rows[0]["class_id"], rows[-1]["class_id"]}]
    examples = examples_from_files([Path(r["file"]) for r in few], [r["class_id"] for r in few])
    with pytest.raises(CannotLearn, match="2 products"):
        tune(examples, SETTINGS, progress=False)


def test_settings_out_of_range_are_refused(rows: list[dict[str, str]]) -> None:
    with pytest.raises(CannotLearn, match="epochs"):
        tune([], Recipe(epochs=0), progress=False)


def test_the_onnx_export_matches_torch_on_real_photos(
    first_run: TuneResult, rows: list[dict[str, str]], tmp_path: Path
) -> None:
    out = export_tuned_model(first_run.model, tmp_path / "tuned", "grocery-tuned-1")
    images = [Image.open(r["file"]).convert("RGB") for r in rows[::3]]
    assert export_error(first_run.model, out / "model.onnx", images) < 1e-4
    spec = ModelSpec.from_json(out / "model.json")
    assert (spec.dim, spec.feature_map_output, spec.logits_output) == (1280, "feature_map", "logits")
    outputs = OnnxEncoder(spec, threads=1).run(images[:2])
    assert outputs.embeddings.shape == (2, 1280)
    assert outputs.feature_maps is not None and outputs.logits is not None
    assert json.loads((out / "model.json").read_text())["tuned_from"] == "efficientnet-lite0"


def test_refreshed_views_keep_the_clean_view_and_are_reproducible(rows: list[dict[str, str]]) -> None:
    examples = examples_from_files([Path(r["file"]) for r in rows[:2]], [r["class_id"] for r in rows[:2]])
    cache = ViewCache(load_tunable("efficientnet-lite0"), [e.load for e in examples], 3, seed=0)
    assert cache.store is not None
    first = cache.store.clone()
    cache.refresh(1)
    assert torch.equal(cache.store[:, 0], first[:, 0])
    assert not torch.equal(cache.store[:, 1:], first[:, 1:])
    cache.refresh(0)
    assert torch.equal(cache.store, first)


def test_likely_twins_are_open_groups_close_enough() -> None:
    means = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.95, 0.05]], dtype=np.float32)
    open_groups = np.array([True, True, True, False])  # group 3 holds a product with several pictures
    twins = likely_twins(means, open_groups, k=2, threshold=0.9).numpy()
    assert twins[0].tolist() == [1, -1] and twins[1].tolist() == [0, -1]
    assert twins[2].tolist() == [-1, -1]  # nothing close
    assert twins[3].tolist() == [-1, -1]  # not open: its neighbours stay negatives
    assert likely_twins(means, open_groups, k=20, threshold=0.9).shape == (4, 20)  # fewer groups than k


def test_an_ignored_twin_is_not_pushed_away() -> None:
    proxies = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], requires_grad=True)
    embedding = torch.tensor([[1.0, 0.05]], requires_grad=True)
    labels = torch.tensor([0])
    twins = torch.tensor([[1], [0], [-1]])
    plain = cosface_loss(embedding, proxies, labels, 20.0, 0.1)
    masked = cosface_loss(embedding, proxies, labels, 20.0, 0.1, twins)
    assert float(masked.detach()) < float(plain.detach())
    masked.backward()  # type: ignore[no-untyped-call]
    assert proxies.grad is not None and float(proxies.grad[1].abs().sum()) == 0.0


def test_an_ungrouped_listing_is_neither_drawn_nor_pushed_away() -> None:
    # groups 0 and 1 hold two pictures each; group 2 is a listing no pseudo-group joined
    labels = np.array([0, 0, 1, 1, 2], dtype=np.int64)
    silent = np.array([False, False, True])
    settings = Recipe(groups_per_batch=2, views_per_group=2)
    for epoch in range(5):
        for pictures, _ in balanced_batches(labels, 2, settings, epoch, silent):
            assert 4 not in pictures
    proxies = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.99, 0.1]], requires_grad=True)
    loss = cosface_loss(torch.tensor([[1.0, 0.05]]), proxies, torch.tensor([0]), 20.0, 0.1, None, torch.tensor(silent))
    loss.backward()  # type: ignore[no-untyped-call]
    assert proxies.grad is not None and float(proxies.grad[2].abs().sum()) == 0.0


def test_listings_listed_again_train_as_listings_and_are_checked_on_their_held_back_twins(
    grocery_rows: list[dict[str, str]],
) -> None:
    # each train photo a listing of its own, no group key: a product's photos are near-duplicates
    train = [r for r in grocery_rows if r["split"] == "train"]
    classes = sorted({r["class_id"] for r in train}, key=int)[::8][:10]  # 73 % have a near-duplicate
    listings = [r for c in classes for r in [r for r in train if r["class_id"] == c][:12]]
    examples = examples_from_files([Path(r["file"]) for r in listings], [r["path"] for r in listings])
    settings = Recipe(
        epochs=1, groups_per_batch=4, views_per_group=2, min_products=20, threads=1, warmup_steps=2, holdback=0.2
    )
    result = tune(examples, settings, progress=False)

    assert result.variant == "listings"
    assert result.recipe is not None and result.recipe.cached_views is None  # a fresh view every step
    assert (result.recipe.pseudo, result.recipe.outliers, result.recipe.keep) == ("mutual-knn", "drop", "last")
    assert result.held_back_metric == "twins" and 0.5 <= result.held_back_before <= 1
    frozen = ViewCache(load_tunable("efficientnet-lite0"), [e.load for e in examples], None, 0).embed(
        range(len(examples))
    )
    twins = twin_groups(frozen)
    assert twins is not None
    held = result.labels == -1
    # whole groups of near-duplicates are held back, about the share asked, and nearly all
    # of them are one product
    assert all(held[twins == g].all() for g in np.unique(twins[held]))
    assert (np.bincount(twins[held]) != 1).all() and 0.1 <= held.mean() <= 0.3
    products = np.array([r["class_id"] for r in listings])
    assert np.mean([len(set(products[twins == g])) == 1 for g in np.unique(twins[held])]) >= 0.9

    # studio shots, one per product and all different, are not listings listed again
    iconic = [r for r in grocery_rows if r["split"] == "catalog"][:40]
    loaders = [e.load for e in examples_from_files([Path(r["file"]) for r in iconic], [r["path"] for r in iconic])]
    assert twin_groups(ViewCache(load_tunable("efficientnet-lite0"), loaders, None, 0).embed(range(40))) is None

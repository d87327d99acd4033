"""Switching a catalog to another model's vectors, in both stores: all or nothing, reversible,
and refused to a process still holding the old model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.catalog.test_keywords import open_catalog
from tongkuan.catalog.store import Catalog
from tongkuan.domain.products import NewImage, Product
from tongkuan.errors import DimensionMismatch, ModelSwitched


def unit(values: list[float]) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    store = open_catalog(request.param, request, tmp_path)
    store.upsert_many(
        [
            (
                Product(f"p{i}", f"product {i}"),
                [NewImage(f"h{i}{j}", f"{i}{j}.jpg", unit([i + 1, j, 1, 0])) for j in range(2)],
            )
            for i in range(3)
        ]
    )
    return store


def test_a_switch_waits_for_every_picture_then_swaps_all_vectors_at_once(catalog: Catalog) -> None:
    ids, old = catalog.vectors()
    pending = catalog.unstaged("m2")
    assert [p.vector_id for p in pending] == ids.tolist() and pending[0].location == "00.jpg"
    catalog.stage("m2", 4, [(p.vector_id, unit([0, 0, 0, 1 + p.vector_id])) for p in pending[:-1]])
    assert catalog.switch_model("m2", 4) is False  # one picture has no vector of m2 yet
    assert catalog.current_model() == ("none", 4) and np.array_equal(catalog.vectors()[1], old)
    catalog.stage("m2", 4, [(pending[-1].vector_id, unit([0, 0, 0, 1]))])
    assert catalog.unstaged("m2") == []
    assert catalog.switch_model("m2", 4) is True
    assert catalog.current_model() == ("m2", 4) and catalog.previous_model() == ("none", 4)
    assert np.allclose(catalog.vectors()[1], np.tile([0, 0, 0, 1], (6, 1)))
    # the replaced vectors stay staged: switching back needs no embedding
    assert catalog.unstaged("none") == [] and catalog.switch_model("none", 4) is True
    assert np.array_equal(catalog.vectors()[1], old)


def test_a_process_holding_the_old_model_cannot_write_its_vectors(
    catalog: Catalog, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    catalog.stage("m2", 4, [(p.vector_id, unit([1, 1, 1, 1])) for p in catalog.unstaged("m2")])
    assert catalog.switch_model("m2", 4)
    kind = request.node.callspec.params["catalog"]
    if kind == "sqlite":  # a second process's view of the same file
        from tongkuan.catalog.sqlite import SqliteCatalog

        with pytest.raises(DimensionMismatch):  # opening it for the old model is refused outright
            SqliteCatalog(tmp_path / "catalog.db", "none", 4)
    catalog.model = "none"  # as a process opened before the switch still believes
    with pytest.raises(ModelSwitched, match="m2"):
        catalog.upsert(Product("late", "late"), [NewImage("h", "late.jpg", unit([1, 0, 0, 0]))])


def test_staged_vectors_of_another_dimension_are_refused(catalog: Catalog) -> None:
    with pytest.raises(DimensionMismatch):
        catalog.stage("m3", 8, [(1, np.ones(4, np.float32))])

"""The tuning recipe: the variant each catalog shape gets and what it changes, the
learning-rate schedule, and that the command line runs the recipe as declared."""

from __future__ import annotations

from dataclasses import fields

import pytest

from tongkuan.adapt.recipe import LISTINGS, MAX_VIEWS, MIN_VIEWS_SINGLE, CatalogShape, Recipe, choose, rate_factor
from tongkuan.errors import CannotLearn


def test_a_catalog_of_products_with_several_pictures_trains_with_the_recipe_as_declared() -> None:
    recipe = Recipe()
    assert choose(recipe, CatalogShape(pictures=3000, single=False)) == ("several pictures", recipe)


def test_single_picture_products_get_more_cached_views_and_the_gentler_backbone_rate() -> None:
    recipe = Recipe(view_budget=8000)
    name, chosen = choose(recipe, CatalogShape(pictures=1000, single=True))
    assert name == "single pictures"
    assert chosen.cached_views == 8 and chosen.lr_backbone == recipe.lr_backbone_single
    # the views are bounded on both sides whatever the budget affords
    assert choose(recipe, CatalogShape(pictures=10, single=True))[1].cached_views == MAX_VIEWS
    assert choose(recipe, CatalogShape(pictures=100_000, single=True))[1].cached_views == MIN_VIEWS_SINGLE


def test_listings_listed_again_get_the_listings_variant() -> None:
    name, chosen = choose(Recipe(), CatalogShape(pictures=2640, single=True, listed_again=True))
    assert name == "listings"
    assert all(getattr(chosen, key) == value for key, value in LISTINGS.items())
    assert chosen.lr_backbone == Recipe.lr_backbone_single


def test_listings_are_looked_for_only_where_the_recipe_asks() -> None:
    assert Recipe().looks_for_listings(single=True)
    assert not Recipe().looks_for_listings(single=False)
    assert not Recipe(listings="off").looks_for_listings(single=True)
    off = Recipe(listings="off")
    assert choose(off, CatalogShape(pictures=100, single=True, listed_again=True))[0] == "single pictures"


def test_every_change_a_variant_makes_is_a_field_of_the_recipe() -> None:
    names = {field.name for field in fields(Recipe)}
    assert set(LISTINGS) <= names


def test_the_learning_rate_warms_up_then_decays_to_zero() -> None:
    recipe = Recipe(warmup_steps=10)
    factors = [rate_factor(recipe, step, 100) for step in range(101)]
    assert factors[0] == pytest.approx(0.1 * 0.5 * 2)  # a tenth of the rate, before any decay
    assert max(factors) == factors[9] and factors[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    constant = Recipe(warmup_steps=10, schedule="constant")
    assert [rate_factor(constant, step, 100) for step in (0, 9, 50, 100)] == [0.1, 1.0, 1.0, 1.0]


def test_a_recipe_out_of_range_is_refused_with_the_rule() -> None:
    with pytest.raises(CannotLearn, match="epochs must be at least 1"):
        Recipe(epochs=0).check()


def test_the_recipe_prints_every_field_in_order() -> None:
    lines = Recipe().lines()
    assert [line.split(" = ")[0] for line in lines] == [field.name for field in fields(Recipe)]
    assert "epochs = 6" in lines

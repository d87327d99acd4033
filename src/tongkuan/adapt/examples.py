"""What tuning learns from: the catalog's pictures as examples, and the plan their groups
and the catalog's shape decide before training (`tongkuan.adapt.recipe`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from tongkuan.adapt.groups import Labels, labels_from_products
from tongkuan.adapt.network import load_tunable
from tongkuan.adapt.recipe import CatalogShape, Recipe, choose
from tongkuan.adapt.sampling import twin_groups
from tongkuan.adapt.views import ViewCache
from tongkuan.domain.categories import CATEGORIES
from tongkuan.errors import CannotLearn


@dataclass(frozen=True)
class Example:
    """One catalog picture: its product, an optional group key tying listings of one SKU
    together, how to load its pixels (called once per cached view build), and the position
    in `CATEGORIES` of the category its record gives (None: not given)."""

    product: str
    load: Callable[[], Image.Image]
    group: str | None = None
    name: str = ""  # identifies the picture in the checkpoint's fingerprint
    category: int | None = None


def examples_from_files(
    paths: Sequence[Path],
    products: Sequence[str],
    groups: Sequence[str | None] | None = None,
    categories: Sequence[int | None] | None = None,
) -> list[Example]:
    """Examples for pictures stored as files."""

    def loader(path: Path) -> Callable[[], Image.Image]:
        def load() -> Image.Image:
            with Image.open(path) as image:
                return image.convert("RGB")

        return load

    keys = groups if groups is not None else [None] * len(paths)
    cats = categories if categories is not None else [None] * len(paths)
    return [
        Example(p, loader(path), g, str(path), c) for path, p, g, c in zip(paths, products, keys, cats, strict=True)
    ]


@dataclass(frozen=True)
class Plan:
    """What a catalog's examples decide before training: their groups (`known`, one label per
    example, and each group's size), the catalog's shape, the variant it gets and the recipe
    that then runs, and where single-picture listings are listed again, their groups of
    near-duplicates and the shipped model's embeddings they were found with."""

    known: Labels
    sizes: NDArray[np.int64]
    shape: CatalogShape
    variant: str
    recipe: Recipe
    twins: Labels | None = None
    frozen: NDArray[np.float32] | None = None


def plan(examples: Sequence[Example], recipe: Recipe, device: torch.device | None = None) -> Plan:
    """Group the examples and choose the recipe for the catalog's shape. Where products hold
    one picture each, the shipped model embeds every picture once to look for listings listed
    again. Raises `CannotLearn` where the catalog has fewer than `recipe.min_products` groups."""
    known = labels_from_products([e.product for e in examples], [e.group for e in examples])
    groups = int(known.max()) + 1 if len(examples) else 0
    if groups < recipe.min_products:
        raise CannotLearn(
            f"the catalog has {groups} products (counting listings tied by a group key as one); "
            f"tuning needs at least {recipe.min_products} to learn anything it can check"
        )
    sizes = np.bincount(known)
    single = bool(np.median(sizes) <= 1)
    frozen, twins = None, None
    if recipe.looks_for_listings(single):
        probe = load_tunable(recipe.model).to(device or torch.device("cpu"))
        loaders = [e.load for e in examples]
        frozen = ViewCache(probe, loaders, None, recipe.seed, device=device).embed(range(len(examples)))
        twins = twin_groups(frozen)
    shape = CatalogShape(len(examples), single, twins is not None)
    variant, chosen = choose(recipe, shape)
    return Plan(known, sizes, shape, variant, chosen, twins, frozen)


def training_device(recipe: Recipe) -> torch.device:
    """The recipe's device: CUDA when available, else the CPU, unless it names one."""
    return torch.device(recipe.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def taught_categories(categories: NDArray[np.int64], recipe: Recipe) -> NDArray[np.float32] | None:
    """Class weights for the category head's cross-entropy (balanced: each category counts
    as much as any other), or None where fewer than two categories have enough pictures to
    learn from. `categories` holds the training pictures' categories, -1 where none is given."""
    counts = np.bincount(categories[categories >= 0], minlength=len(CATEGORIES))
    taught = counts >= recipe.min_category_pictures
    if taught.sum() < 2:
        return None
    weights = np.zeros(len(CATEGORIES), dtype=np.float32)
    weights[taught] = counts[taught].sum() / (taught.sum() * counts[taught])
    return weights

"""The catalog's learned whitening: learned from its stored vectors, kept in its metadata (so
every replica reads the same one), and read back as the space searches run in.

The maths is `tongkuan.vision.whitening`; this module only reads the catalog and stores the result.
"""

from __future__ import annotations

from tongkuan.catalog.store import LearnedMetadata, ProductReader
from tongkuan.domain.spaces import ModelSpace, SearchSpace
from tongkuan.vision.whitening import DEFAULT_SHRINKAGE, ScatterSums, Whitening

META_KEY = "whitening"
MAX_PICTURES = 200_000  # learned from at most this many pictures (an even sample of products)
_PAGE = 500


def learn_from_catalog(
    catalog: ProductReader,
    dims: int | None = None,
    shrinkage: float = DEFAULT_SHRINKAGE,
    max_pictures: int = MAX_PICTURES,
) -> Whitening:
    """Learn from the catalog's stored vectors: every product, or an even sample of products
    when the catalog holds more than `max_pictures` pictures."""
    _, pictures = catalog.count()
    step = max(1, -(-pictures // max_pictures))
    sums = ScatterSums(catalog.dim)
    after: str | None = None
    seen = 0
    while page := catalog.products(after, _PAGE):
        after = page[-1].item_id
        chosen = [p.item_id for i, p in enumerate(page, start=seen) if i % step == 0]
        seen += len(page)
        sums.add(vectors for _, vectors in catalog.pictures_with_vectors(chosen).values())
    return sums.learn(catalog.model, dims, shrinkage)


def stored_whitening(catalog: LearnedMetadata) -> Whitening | None:
    """The whitening the catalog holds for its model, if any."""
    text = catalog.learned(META_KEY)
    if text is None:
        return None
    whitening = Whitening.from_text(text)
    return whitening if whitening.model == catalog.model and len(whitening.mean) == catalog.dim else None


def search_space(catalog: LearnedMetadata) -> SearchSpace:
    """The space searches run in: the stored whitening, else the model's own."""
    return stored_whitening(catalog) or ModelSpace(catalog.dim)

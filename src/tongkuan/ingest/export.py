"""The catalog as ingest records again: what `tongkuan export` and the admin export write."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from tongkuan.catalog.store import ProductReader
from tongkuan.domain.products import is_web_url
from tongkuan.ingest.records import to_record

PAGE = 500


def export_records(catalog: ProductReader, stored_picture: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    """Every product as a record with its pictures, in itemId order.

    A predicted category is left out, a named one kept. Pictures kept by URL are written
    as that URL; pictures in the image store as `stored_picture(file name)` (an absolute
    URL or path that a later import can read).
    Each page of products is read with its pictures in one snapshot; a product changed while
    the export runs appears as it was before or after the change.
    """
    cursor: str | None = None
    while True:
        with catalog.snapshot():  # a page of products and all their pictures, in two queries
            products = catalog.products(cursor, PAGE)
            pictures = catalog.pictures_of([product.item_id for product in products])
        for product in products:
            if not (shown := pictures.get(product.item_id)):
                continue
            record = {k: v for k, v in to_record(product).items() if v is not None and v != {}}
            if product.category_predicted:
                record.pop("categoryId", None)  # predicted again on import, by whichever model imports it
            record["images"] = [p.location if is_web_url(p.location) else stored_picture(p.location) for p in shown]
            yield record
        if len(products) < PAGE:
            return
        cursor = products[-1].item_id

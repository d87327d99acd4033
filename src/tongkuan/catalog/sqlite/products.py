"""Reading products and their pictures from the embedded catalog by itemId (`ProductReader`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import common
from tongkuan.catalog.sqlite.database import SqliteDatabase
from tongkuan.domain.products import Product, StoredImage
from tongkuan.errors import ProductNotFound


class SqliteProductReader(SqliteDatabase):
    """`ProductReader` on the embedded catalog."""

    def get(self, item_id: str) -> Product:
        row = self._db.execute(f"SELECT {common.ITEM_FIELDS} FROM items WHERE item_id = ?", (item_id,)).fetchone()
        if row is None:
            raise ProductNotFound(item_id)
        return common.product_from_row(row)

    def products(self, after: str | None = None, limit: int = 100) -> list[Product]:
        """Products in itemId order, starting after the itemId `after` (a cursor)."""
        rows = self._db.execute(
            f"SELECT {common.ITEM_FIELDS_P} FROM items p WHERE p.item_id > ? ORDER BY p.item_id LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return [common.product_from_row(r) for r in rows]

    def images_of(self, item_id: str) -> list[StoredImage]:
        """A product's pictures in order (empty if it is not there)."""
        return self.pictures_of([item_id]).get(item_id, [])

    def pictures_of(self, item_ids: Sequence[str]) -> dict[str, list[StoredImage]]:
        """Each of the given products' pictures in order (products without any left out)."""
        rows = self._rows_in(
            f"SELECT {common.PICTURE_FIELDS} FROM images WHERE item_id IN ({{values}}) ORDER BY item_id, position",
            item_ids,
        )
        return common.pictures_by_product(rows)

    def image_hashes(self, item_id: str) -> list[str]:
        """Content hashes of a product's images in order (empty if it is not there)."""
        return [
            r[0]
            for r in self._db.execute("SELECT content_hash FROM images WHERE item_id = ? ORDER BY position", (item_id,))
        ]

    def first_images(self, item_ids: Sequence[str]) -> dict[str, StoredImage]:
        """The first picture of each of the given products."""
        rows = self._rows_in(
            "SELECT vector_id, item_id, content_hash, location, name, MIN(position) FROM images "
            "WHERE item_id IN ({values}) GROUP BY item_id",
            item_ids,
        )
        return {item_id: StoredImage(int(v), item_id, h, loc, name) for v, item_id, h, loc, name, _ in rows}

    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
        """Every picture of the given products with their vectors, one matrix per product."""
        rows = self._rows_in(
            f"SELECT {common.PICTURE_FIELDS}, vector FROM images "
            "WHERE item_id IN ({values}) ORDER BY item_id, position",
            item_ids,
        )
        return common.grouped_pictures(rows, self.dim)

    def stored_locations(self) -> set[str]:
        """Every picture location the catalog names (file names in the image store, or URLs)."""
        return {str(r[0]) for r in self._db.execute("SELECT DISTINCT location FROM images")}

    def count(self) -> tuple[int, int]:
        """(products, images)."""
        items = self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        images = self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        return int(items), int(images)

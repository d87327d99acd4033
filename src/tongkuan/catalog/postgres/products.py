"""Reading products and their pictures from the server catalog by itemId (`ProductReader`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tongkuan.catalog import common
from tongkuan.catalog.postgres.database import PostgresDatabase
from tongkuan.domain.products import Product, StoredImage
from tongkuan.errors import ProductNotFound


class PostgresProductReader(PostgresDatabase):
    """`ProductReader` on the server catalog."""

    def get(self, item_id: str) -> Product:
        rows = self._rows(f"SELECT {common.ITEM_FIELDS} FROM items WHERE item_id = %s", (item_id,))
        if not rows:
            raise ProductNotFound(item_id)
        return common.product_from_row(rows[0])

    def products(self, after: str | None = None, limit: int = 100) -> list[Product]:
        """Products in itemId order (byte order, as the embedded store keeps it), starting after
        the itemId `after` (a cursor)."""
        rows = self._rows(
            f"SELECT {common.ITEM_FIELDS_P} FROM items p "
            'WHERE p.item_id COLLATE "C" > %s ORDER BY p.item_id COLLATE "C" LIMIT %s',
            (after or "", limit),
        )
        return [common.product_from_row(r) for r in rows]

    def images_of(self, item_id: str) -> list[StoredImage]:
        return self.pictures_of([item_id]).get(item_id, [])

    def pictures_of(self, item_ids: Sequence[str]) -> dict[str, list[StoredImage]]:
        rows = self._rows(
            f"SELECT {common.PICTURE_FIELDS} FROM images WHERE item_id = ANY(%s) ORDER BY item_id, position",
            (list(item_ids),),
        )
        return common.pictures_by_product(rows)

    def image_hashes(self, item_id: str) -> list[str]:
        rows = self._rows("SELECT content_hash FROM images WHERE item_id = %s ORDER BY position", (item_id,))
        return [str(r[0]) for r in rows]

    def first_images(self, item_ids: Sequence[str]) -> dict[str, StoredImage]:
        rows = self._rows(
            f"SELECT DISTINCT ON (item_id) {common.PICTURE_FIELDS} FROM images "
            "WHERE item_id = ANY(%s) ORDER BY item_id, position",
            (list(item_ids),),
        )
        return {item_id: StoredImage(int(v), item_id, h, loc, name) for v, item_id, h, loc, name in rows}

    def pictures_with_vectors(
        self, item_ids: Sequence[str]
    ) -> dict[str, tuple[list[StoredImage], NDArray[np.float32]]]:
        rows = self._rows(
            f"SELECT {common.PICTURE_FIELDS}, vector FROM images WHERE item_id = ANY(%s) ORDER BY item_id, position",
            (list(item_ids),),
        )
        return common.grouped_pictures(rows, self.dim)

    def stored_locations(self) -> set[str]:
        return {str(r[0]) for r in self._rows("SELECT DISTINCT location FROM images")}

    def count(self) -> tuple[int, int]:
        """(products, pictures), from the counters writers keep."""
        found = dict(self._rows("SELECT key, value FROM meta WHERE key IN ('products', 'pictures')"))
        return int(found["products"]), int(found["pictures"])

"""The reads a search makes on the server catalog (`SearchReads`): the products behind the
vectors an index found, picture counts, and how many products a filter leaves. A product's
pictures with their vectors come from `PostgresProductReader.pictures_with_vectors`."""

from __future__ import annotations

from collections.abc import Sequence

from tongkuan.catalog import common
from tongkuan.catalog.postgres.database import PostgresDatabase
from tongkuan.catalog.postgres.filters import filter_sql
from tongkuan.domain.categories import Category
from tongkuan.domain.products import Product, ProductFilter, StoredImage


class PostgresSearchReads(PostgresDatabase):
    """`SearchReads` on the server catalog, less what `PostgresProductReader` offers."""

    def hydrate(self, vector_ids: Sequence[int]) -> dict[int, tuple[Product, StoredImage]]:
        """Products and picture info for the given vector ids; ids that are gone are left out."""
        return self.hits(vector_ids)[0]

    def hits(self, vector_ids: Sequence[int]) -> tuple[dict[int, tuple[Product, StoredImage]], dict[str, int]]:
        """What `hydrate` reads, and how many pictures each product has, in one query."""
        rows = self._rows(common.hits_query() + " WHERE i.vector_id = ANY(%s)", (list(vector_ids),))
        return common.hits_from_rows(rows, self._products)

    def picture_counts(self, item_ids: Sequence[str]) -> dict[str, int]:
        rows = self._rows(
            "SELECT item_id, COUNT(*) FROM images WHERE item_id = ANY(%s) GROUP BY item_id", (list(item_ids),)
        )
        return {str(item_id): int(n) for item_id, n in rows}

    def count_products(self, category: Category | None = None, where: ProductFilter | None = None) -> int:
        conditions, args = filter_sql(where or ProductFilter())
        if category is not None:
            conditions += " AND p.category_id = %(category)s"
            args["category"] = int(category)
        return int(self._rows(f"SELECT COUNT(*) FROM items p WHERE TRUE{conditions}", args)[0][0])

"""Keyword search on the embedded catalog (`KeywordSearch`), over the FTS5 table `item_words`.

`item_words` holds `keywords.document()` of each product's title and shop name, with the
product's rowid; a query becomes an FTS5 match expression (`keywords.match_expression`),
ranked by BM25.
"""

from __future__ import annotations

from tongkuan.catalog import common, keywords
from tongkuan.catalog.sqlite.database import SqliteDatabase
from tongkuan.catalog.sqlite.filters import PRICE, filter_sql
from tongkuan.domain.products import Product, ProductFilter, Shop, SortOrder

_ORDER = {
    SortOrder.PRICE_ASC: f"{PRICE} ASC, p.volume DESC, p.item_id",
    SortOrder.PRICE_DESC: f"{PRICE} DESC, p.volume DESC, p.item_id",
    SortOrder.SALES_DESC: f"p.volume DESC, {PRICE} ASC, p.item_id",
}


class SqliteKeywordSearch(SqliteDatabase):
    """`KeywordSearch` on the embedded catalog."""

    def keyword_search(
        self,
        text: str,
        sort: SortOrder = SortOrder.RELEVANCE,
        where: ProductFilter | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Product], int]:
        """Products whose titles match `text`, one page of them, and how many match in all.

        Sorted by price or sales, a title must hold every query term. By relevance, titles
        holding every term come first and then those holding some, each group in BM25 order
        (see `keywords.query_terms`).
        """
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        every, some = keywords.match_expression(terms, every=True), keywords.match_expression(terms)
        conditions, args = filter_sql(where or ProductFilter())
        source = f"FROM item_words w JOIN items p ON p.rowid = w.rowid WHERE item_words MATCH ?{conditions}"

        def count(match: str) -> int:
            return int(self._db.execute(f"SELECT COUNT(*) {source}", [match, *args]).fetchone()[0])

        def fetch(match: str, order: str, skip: int, wanted: int) -> list[Product]:
            select = f"SELECT {common.ITEM_FIELDS_P} {source} ORDER BY {order} LIMIT ? OFFSET ?"
            rows = self._db.execute(select, [match, *args, wanted, skip]).fetchall()
            return [common.product_from_row(r) for r in rows]

        with self.snapshot():
            if sort is not SortOrder.RELEVANCE:
                total = count(f"title : ({every})")
                groups = [(f"title : ({every})", _ORDER[sort], total)]
            else:
                # counting "any" and "all" is cheaper than counting "any but not all"
                total, first = count(f"title : ({some})"), count(f"title : (({every}) AND ({some}))")
                order = "bm25(item_words), p.item_id"
                groups = [
                    (f"title : (({every}) AND ({some}))", order, first),
                    (f"title : (({some}) NOT ({every}))", order, total - first),
                ]
            return common.page_of_groups(groups, offset, limit, fetch), total

    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]:
        """Shops whose names hold every query term, best sellers first, and how many match."""
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        match = f"shop : ({keywords.match_expression(terms, every=True)})"
        grouped = (
            f"SELECT {common.SHOP_FIELDS} FROM item_words w JOIN items p ON p.rowid = w.rowid "
            "WHERE item_words MATCH ? GROUP BY p.shop_title"
        )
        with self.snapshot():
            total = int(self._db.execute(f"SELECT COUNT(*) FROM ({grouped})", (match,)).fetchone()[0])
            rows = self._db.execute(f"{grouped} ORDER BY {common.SHOP_ORDER} LIMIT ? OFFSET ?", (match, limit, offset))
            return common.shops_from_rows(rows.fetchall()), total

    def shop_items(self, shop_title: str, limit: int) -> list[Product]:
        """A shop's best-selling products."""
        rows = self._db.execute(
            f"SELECT {common.ITEM_FIELDS_P} FROM items p WHERE p.shop_title = ? "
            "ORDER BY p.volume DESC, p.item_id LIMIT ?",
            (shop_title, limit),
        ).fetchall()
        return [common.product_from_row(r) for r in rows]

"""Keyword search on the embedded catalog (`KeywordSearch`), over the FTS5 tables
`item_words` and `item_chars`.

`item_words` holds `keywords.document()` of each product's title and shop name and
`item_chars` their single Chinese characters, both with the product's rowid. A query's
words become an FTS5 match expression over `item_words` (`keywords.match_expression`),
ranked by BM25; the Chinese characters standing alone in it must also be in `item_chars`.
A query of such characters alone is matched and ranked over `item_chars`.
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
        match = _Match(terms, "title")
        conditions, args = filter_sql(where or ProductFilter())
        source = f"FROM {match.table} w JOIN items p ON p.rowid = w.rowid WHERE {match.table} MATCH ?{match.held}"
        source += conditions

        def count(expression: str) -> int:
            return int(self._db.execute(f"SELECT COUNT(*) {source}", [expression, *match.args, *args]).fetchone()[0])

        def fetch(expression: str, order: str, skip: int, wanted: int) -> list[Product]:
            select = f"SELECT {common.ITEM_FIELDS_P} {source} ORDER BY {order} LIMIT ? OFFSET ?"
            rows = self._db.execute(select, [expression, *match.args, *args, wanted, skip]).fetchall()
            return [common.product_from_row(r) for r in rows]

        every, some = match.every, match.some
        with self.snapshot():
            if sort is not SortOrder.RELEVANCE:
                total = count(every)
                groups = [(every, _ORDER[sort], total)]
            else:
                # counting "any" and "all" is cheaper than counting "any but not all"
                total, first = count(some), count(f"({every}) AND ({some})")
                order = f"bm25({match.table}), p.item_id"
                groups = [
                    (f"({every}) AND ({some})", order, first),
                    (f"({some}) NOT ({every})", order, total - first),
                ]
            return common.page_of_groups(groups, offset, limit, fetch), total

    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]:
        """Shops whose names hold every query term, best sellers first, and how many match."""
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        match = _Match(terms, "shop")
        grouped = (
            f"SELECT {common.SHOP_FIELDS} FROM {match.table} w JOIN items p ON p.rowid = w.rowid "
            f"WHERE {match.table} MATCH ?{match.held} GROUP BY p.shop_title"
        )
        found = [match.every, *match.args]
        with self.snapshot():
            total = int(self._db.execute(f"SELECT COUNT(*) FROM ({grouped})", found).fetchone()[0])
            rows = self._db.execute(f"{grouped} ORDER BY {common.SHOP_ORDER} LIMIT ? OFFSET ?", [*found, limit, offset])
            return common.shops_from_rows(rows.fetchall()), total

    def shop_items(self, shop_title: str, limit: int) -> list[Product]:
        """A shop's best-selling products."""
        rows = self._db.execute(
            f"SELECT {common.ITEM_FIELDS_P} FROM items p WHERE p.shop_title = ? "
            "ORDER BY p.volume DESC, p.item_id LIMIT ?",
            (shop_title, limit),
        ).fetchall()
        return [common.product_from_row(r) for r in rows]


class _Match:
    """A query's terms as FTS5 expressions over the `column` of one table: its words over
    `item_words` (`every`, `some`), with the characters standing alone in it required of
    `item_chars` (`held`, a condition on p.rowid, and its `args`); a query of such characters
    alone, over `item_chars`."""

    def __init__(self, terms: list[keywords.Term], column: str) -> None:
        ranked = [t for t in terms if not t.character]
        held = [t for t in terms if t.character]
        self.table = "item_words" if ranked else "item_chars"
        if not ranked:
            ranked, held = held, []
        self.every = f"{column} : ({keywords.match_expression(ranked, every=True)})"
        self.some = f"{column} : ({keywords.match_expression(ranked)})"
        self.held = " AND p.rowid IN (SELECT rowid FROM item_chars WHERE item_chars MATCH ?)" if held else ""
        self.args = [f"{column} : ({keywords.match_expression(held, every=True)})"] if held else []

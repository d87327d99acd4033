"""Keyword search on the server catalog (`KeywordSearch`), and the keyword vectors it matches.

Each product stores the same terms as the embedded store (jieba words plus Chinese character
pairs, `catalog.keywords`) as `simple` tsvectors with GIN indexes, `title_words` and
`shop_words`: exact, two-character words such as 手机 included, which a pg_trgm index cannot
serve. By relevance, matches are ranked by `ts_rank` (PostgreSQL has no BM25).
"""

from __future__ import annotations

from tongkuan.catalog import common, keywords
from tongkuan.catalog.postgres.database import PostgresDatabase
from tongkuan.catalog.postgres.filters import ID, PRICE, filter_sql
from tongkuan.domain.products import Product, ProductFilter, Shop, SortOrder

_ORDER = {
    SortOrder.PRICE_ASC: f"{PRICE} ASC, p.volume DESC, {ID}",
    SortOrder.PRICE_DESC: f"{PRICE} DESC, p.volume DESC, {ID}",
    SortOrder.SALES_DESC: f"p.volume DESC, {PRICE} ASC, {ID}",
}


class PostgresKeywordSearch(PostgresDatabase):
    """`KeywordSearch` on the server catalog."""

    def keyword_search(
        self,
        text: str,
        sort: SortOrder = SortOrder.RELEVANCE,
        where: ProductFilter | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[Product], int]:
        """Products whose titles match `text`, one page of them, and how many match in all.

        The same tiers as the embedded store: sorted by price or sales, every required term;
        by relevance, titles holding every term first, then those holding some, each by
        `ts_rank` (PostgreSQL has no BM25).
        """
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        conditions, args = filter_sql(where or ProductFilter())
        every, some = tsquery(terms, every=True), tsquery(terms)

        def fetch(match: str, order: str, skip: int, wanted: int) -> list[Product]:
            rows = self._rows(
                f"SELECT {common.ITEM_FIELDS_P} FROM items p WHERE {match}{conditions} "
                f"ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s",
                {"some": some, "every": every, "limit": wanted, "offset": skip, **args},
            )
            return [common.product_from_row(r) for r in rows]

        with self.snapshot():
            if sort is not SortOrder.RELEVANCE:
                match = "p.title_words @@ %(every)s::tsquery"
                total = self._count(match, {"every": every, **args}, conditions)
                groups = [(match, _ORDER[sort], total)]
            else:
                both = "p.title_words @@ %(every)s::tsquery AND p.title_words @@ %(some)s::tsquery"
                total = self._count("p.title_words @@ %(some)s::tsquery", {"some": some, **args}, conditions)
                first = self._count(both, {"some": some, "every": every, **args}, conditions)
                order = f"ts_rank(p.title_words, %(some)s::tsquery) DESC, {ID}"
                groups = [
                    (both, order, first),
                    (
                        "p.title_words @@ %(some)s::tsquery AND NOT p.title_words @@ %(every)s::tsquery",
                        order,
                        total - first,
                    ),
                ]
            return common.page_of_groups(groups, offset, limit, fetch), total

    def _count(self, match: str, args: dict[str, object], conditions: str) -> int:
        return int(self._rows(f"SELECT COUNT(*) FROM items p WHERE {match}{conditions}", args)[0][0])

    def shop_search(self, text: str, offset: int = 0, limit: int = 20) -> tuple[list[Shop], int]:
        """Shops whose names hold every query term, best sellers first, and how many match."""
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        grouped = f"SELECT {common.SHOP_FIELDS} FROM items p WHERE p.shop_words @@ %(q)s::tsquery GROUP BY p.shop_title"
        q = tsquery(terms, every=True)
        with self.snapshot():
            total = int(self._rows(f"SELECT COUNT(*) FROM ({grouped}) g", {"q": q})[0][0])
            rows = self._rows(
                f'{grouped} ORDER BY {common.SHOP_ORDER} COLLATE "C" LIMIT %(limit)s OFFSET %(offset)s',
                {"q": q, "limit": limit, "offset": offset},
            )
        return common.shops_from_rows(rows), total

    def shop_items(self, shop_title: str, limit: int) -> list[Product]:
        rows = self._rows(
            f"SELECT {common.ITEM_FIELDS_P} FROM items p WHERE p.shop_title = %s ORDER BY p.volume DESC, {ID} LIMIT %s",
            (shop_title, limit),
        )
        return [common.product_from_row(r) for r in rows]


def _lexeme(text: str) -> str:
    """One tsvector/tsquery lexeme, quoted so that no text is read as syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def tsvector(text: str) -> str:
    """The keyword vector of a title or shop name, as tsvector text."""
    return " ".join(_lexeme(word) for word in keywords.words(text))


def tsquery(terms: list[keywords.Term], every: bool = False) -> str:
    """Any term, or with `every` all required terms, as tsquery text (prefix terms with `:*`)."""
    chosen = [t for t in terms if t.required] if every else terms
    return (" & " if every else " | ").join(_lexeme(t.text) + (":*" if t.prefix else "") for t in chosen)

"""Keyword search on the server catalog (`KeywordSearch`).

Each product stores the same terms as the embedded store (jieba words, Chinese character
pairs and single Chinese characters, `catalog.keywords`) as `simple` tsvectors with GIN
indexes, `title_words` and `shop_words` (`database.tsvector`, which marks the characters
apart from the words): exact, one- and two-character words such as 鞋 and 手机 included,
which a pg_trgm index cannot serve. By relevance, matches are ranked by `ts_rank`
(PostgreSQL has no BM25).
"""

from __future__ import annotations

from tongkuan.catalog import common, keywords
from tongkuan.catalog.postgres.database import CHARACTER_MARK, PostgresDatabase, lexeme
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
        `ts_rank` of the query's words (PostgreSQL has no BM25). Chinese characters standing
        alone in the query are in every title found (`keywords.Term.character`).
        """
        terms = keywords.query_terms(text)
        if not terms:
            return [], 0
        conditions, args = filter_sql(where or ProductFilter())
        every, some, rank = tsqueries(terms)

        def fetch(match: str, order: str, skip: int, wanted: int) -> list[Product]:
            rows = self._rows(
                f"SELECT {common.ITEM_FIELDS_P} FROM items p WHERE {match}{conditions} "
                f"ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s",
                {"some": some, "every": every, "rank": rank, "limit": wanted, "offset": skip, **args},
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
                order = f"ts_rank(p.title_words, %(rank)s::tsquery) DESC, {ID}"
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
        q, _, _ = tsqueries(terms)
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


def tsqueries(terms: list[keywords.Term]) -> tuple[str, str, str]:
    """A query's terms as tsquery text (prefix terms with `:*`): every required term; any
    word with every character standing alone; and any word, what ranks a match. A query of
    such characters alone: all of them, any of them, any of them."""
    words = [_lexeme(t) + (":*" if t.prefix else "") for t in terms if not t.character]
    held = [_lexeme(t) for t in terms if t.character]
    if not words:
        every, any_held = " & ".join(held), " | ".join(held)
        return every, any_held, any_held
    required = [_lexeme(t) + (":*" if t.prefix else "") for t in terms if t.required and not t.character]
    any_word = " | ".join(words)
    some = f"({any_word}) & {' & '.join(held)}" if held else any_word
    return " & ".join(required + held), some, any_word


def _lexeme(term: keywords.Term) -> str:
    return lexeme(CHARACTER_MARK + term.text if term.character else term.text)

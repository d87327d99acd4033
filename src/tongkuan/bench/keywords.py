"""Keyword search quality on Product1M titles, as the keyword benchmark and its test measure it.

Each instance label (e.g. "AHC 黄金水") is a query; the relevant listings are those whose
`instance_labels` contain it. Many relevant listings are gift sets whose titles never name
the product, so no lexical method reaches 1.0 here. The baseline is a plain substring
match: every space-separated part of the query must occur in the title (SQL LIKE), in
catalog order.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tongkuan.bench.data import read_rows
from tongkuan.catalog import keywords
from tongkuan.catalog.store import Catalog
from tongkuan.domain.products import Product

NDCG_AT = 10
RECALL_AT = 20


def load_titles(root: Path, catalog: Catalog) -> dict[str, set[str]]:
    """Put every Product1M listing into `catalog` (records only) and return label -> relevant itemIds."""
    rows = read_rows(root / "product1m_text" / "items.csv")
    catalog.upsert_many([(Product(item_id=r["item_id"], title=r["title"]), None) for r in rows])
    relevant: dict[str, set[str]] = {}
    for row in rows:
        for label in json.loads(row["instance_labels"]):
            relevant.setdefault(label, set()).add(row["item_id"])
    return relevant


def ndcg(ranked: list[str], relevant: set[str], k: int = NDCG_AT) -> float:
    gain = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return gain / ideal


def recall(ranked: list[str], relevant: set[str], k: int = RECALL_AT) -> float:
    return len(set(ranked[:k]) & relevant) / min(k, len(relevant))


def evaluate(search: Callable[[str], list[str]], relevant: dict[str, set[str]]) -> dict[str, float]:
    """Mean nDCG@10 and Recall@20 of `search` over every label, and its mean time per query."""
    started = time.perf_counter()
    ranked = {label: search(label) for label in relevant}
    seconds = time.perf_counter() - started
    return {
        "ndcg@10": sum(ndcg(ranked[q], r) for q, r in relevant.items()) / len(relevant),
        "recall@20": sum(recall(ranked[q], r) for q, r in relevant.items()) / len(relevant),
        "ms_per_query": 1000 * seconds / len(relevant),
    }


def like_search(path: Path) -> Callable[[str], list[str]]:
    """The substring baseline over the SQLite catalog file at `path`."""
    db = sqlite3.connect(path)

    def search(query: str) -> list[str]:
        parts = query.split() or [query]
        where = " AND ".join("title LIKE ?" for _ in parts)
        sql = f"SELECT item_id FROM items WHERE {where} ORDER BY rowid LIMIT {RECALL_AT}"
        return [r[0] for r in db.execute(sql, [f"%{p}%" for p in parts])]

    return search


def tongkuan_search(catalog: Catalog) -> Callable[[str], list[str]]:
    """The catalog's own keyword search, as the service ranks it."""

    def search(query: str) -> list[str]:
        return [p.item_id for p in catalog.keyword_search(query, limit=RECALL_AT)[0]]

    return search


@contextmanager
def any_term_ranking() -> Iterator[None]:
    """The SQLite catalog's keyword search without its all-words tier while inside: every
    tier is the any-term query, so one BM25 ranking over titles holding any query word
    remains ((A) NOT (A) is empty). What the all-words tier buys."""
    shipped = keywords.match_expression
    keywords.match_expression = _any_term
    try:
        yield
    finally:
        keywords.match_expression = shipped


def _any_term(terms: list[keywords.Term], every: bool = False) -> str:
    """`match_expression` without the all-words tier: every tier is the any-term query."""
    return " OR ".join('"' + t.text.replace('"', '""') + '"' + ("*" if t.prefix else "") for t in terms)

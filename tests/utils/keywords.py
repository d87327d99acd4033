"""Keyword-search quality on Product1M titles, shared by the test and the benchmark.

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
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from tests.utils.data import read_rows
from tongkuan.catalog.sqlite import SqliteCatalog
from tongkuan.catalog.store import Catalog
from tongkuan.domain.products import Product

NDCG_AT = 10
RECALL_AT = 20


def cocktail_listings(root: Path) -> list[tuple[Product, dict[str, str]]]:
    """The 752 real cocktail listings as products (their url is synthetic), each with its CSV row."""
    return [
        (
            Product(
                item_id=f"c{r['row']}",
                title=r["title"],
                reserve_price=Decimal(r["price_cny"]),
                shop_title=r["shop"],
                provcity=r["location"],
                volume=int(r["sales_min"] or 0),
                user_type=1 if "旗舰店" in r["shop"] else 0,  # synthetic: flagship stores as Tmall
                url=f"https://item.example/{r['row']}",
            ),
            r,
        )
        for r in read_rows(root / "taobao_cocktail_listings" / "items.csv")
    ]


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
    """The substring baseline over the catalog file at `path`."""
    db = sqlite3.connect(path)

    def search(query: str) -> list[str]:
        parts = query.split() or [query]
        where = " AND ".join("title LIKE ?" for _ in parts)
        sql = f"SELECT item_id FROM items WHERE {where} ORDER BY rowid LIMIT {RECALL_AT}"
        return [r[0] for r in db.execute(sql, [f"%{p}%" for p in parts])]

    return search


def tongkuan_search(catalog: Catalog) -> Callable[[str], list[str]]:
    def search(query: str) -> list[str]:
        return [p.item_id for p in catalog.keyword_search(query, limit=RECALL_AT)[0]]

    return search


def compare(root: Path, workdir: Path) -> dict[str, dict[str, float]]:
    """Both methods on the same catalog, in one run."""
    catalog = SqliteCatalog(workdir / "keywords.db", "none", 4)
    relevant = load_titles(root, catalog)
    return {
        "queries": {"labels": float(len(relevant))},
        "tongkuan": evaluate(tongkuan_search(catalog), relevant),
        "like": evaluate(like_search(catalog.path), relevant),
    }

"""Keyword search quality and speed on real Taobao titles, against a substring baseline run
on the same catalog in the same process.

    .venv/bin/python bench/keywords.py [--data ../shared/data] [--scale 100000] [--postgres]

Quality: Product1M (9,220 listings); each of its 392 instance labels is a query and the
listings carrying that label are relevant (`tongkuan.bench.evaluate`). Reports nDCG@10
and Recall@20 for
- tongkuan: jieba words + Chinese character pairs, titles holding every query word first,
  each group in BM25 order (the shipped ranking);
- any-term BM25: the same index, one BM25 ranking over titles holding any query word;
- LIKE: every space-separated part of the query as a substring, in catalog order.
Speed: the Product1M titles repeated under new itemIds up to `--scale` listings; mean and
p95 time per query for the 392 labels, by relevance and sorted by sales, against LIKE.
With --postgres, instead: the PostgreSQL catalog (the same words and pairs in a `simple`
tsvector, GIN-indexed, ts_rank) against pg_trgm substring search with a trigram GIN index,
on the same database: quality on Product1M and speed at `--scale` titles.
The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tongkuan.bench import (
    RECALL_AT,
    PostgresCatalog,
    PostgresServer,
    Product,
    SortOrder,
    SqliteCatalog,
    any_term_ranking,
    evaluate,
    like_search,
    load_titles,
    read_rows,
    tongkuan_search,
)

REPO = Path(__file__).resolve().parent.parent


def quality(root: Path, workdir: Path) -> dict[str, dict[str, float]]:
    catalog = SqliteCatalog(workdir / "quality.db", "none", 4)
    relevant = load_titles(root, catalog)
    results = {"tongkuan": evaluate(tongkuan_search(catalog), relevant)}
    with any_term_ranking():
        results["any-term BM25"] = evaluate(tongkuan_search(catalog), relevant)
    results["LIKE"] = evaluate(like_search(catalog.path), relevant)
    return results


def timings(search: object, queries: list[str]) -> dict[str, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        search(query)  # type: ignore[operator]
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return {"mean_ms": statistics.mean(times), "p95_ms": times[int(0.95 * len(times))]}


def speed(root: Path, workdir: Path, scale: int) -> dict[str, object]:
    rows = read_rows(root / "product1m_text" / "items.csv")
    catalog = SqliteCatalog(workdir / "speed.db", "none", 4)
    started = time.perf_counter()
    batch = []
    for n in range(scale):
        row = rows[n % len(rows)]
        batch.append((Product(item_id=f"{n:07d}", title=row["title"], volume=n % 977), None))
        if len(batch) == 5000:
            catalog.upsert_many(batch)
            batch = []
    if batch:
        catalog.upsert_many(batch)
    indexing = time.perf_counter() - started
    labels = sorted({label for row in rows for label in json.loads(row["instance_labels"])})
    like = like_search(catalog.path)
    return {
        "titles": scale,
        "index_titles_per_s": scale / indexing,
        "relevance": timings(lambda q: catalog.keyword_search(q, limit=RECALL_AT), labels),
        "sales_desc": timings(lambda q: catalog.keyword_search(q, SortOrder.SALES_DESC, limit=RECALL_AT), labels),
        "LIKE": timings(like, labels),
    }


def trigram_search(url: str) -> Callable[[str], list[str]]:
    """pg_trgm: every query part as a substring (`ILIKE`, served by a trigram GIN index where
    the part has 3+ characters), most similar titles first."""
    import psycopg  # the scale extra: only --postgres needs it

    db = psycopg.connect(url, autocommit=True)

    def search(query: str) -> list[str]:
        parts = query.split() or [query]
        where = " AND ".join("title ILIKE %s" for _ in parts)
        sql = f"SELECT item_id FROM tongkuan.items WHERE {where} ORDER BY similarity(title, %s) DESC, item_id LIMIT %s"
        return [r[0] for r in db.execute(sql, [*(f"%{p}%" for p in parts), query, RECALL_AT])]  # type: ignore[arg-type]

    return search


def postgres(root: Path, scale: int) -> dict[str, object]:
    """The PostgreSQL catalog's tsvector of jieba words + pairs against pg_trgm, same database."""
    import psycopg  # the scale extra: only --postgres needs it

    with PostgresServer(durable=True) as server:
        quality_url = server.create_database("quality")
        catalog = PostgresCatalog(quality_url, "none", 4)
        relevant = load_titles(root, catalog)
        with psycopg.connect(quality_url, autocommit=True) as db:
            db.execute("CREATE EXTENSION pg_trgm")
            db.execute("CREATE INDEX items_title_trgm ON tongkuan.items USING GIN (title gin_trgm_ops)")
            two_chars = db.execute("EXPLAIN SELECT item_id FROM tongkuan.items WHERE title ILIKE '%手机%'").fetchall()
        found: dict[str, object] = {
            "tsvector (jieba words + pairs)": evaluate(tongkuan_search(catalog), relevant),
            "pg_trgm": evaluate(trigram_search(quality_url), relevant),
            "pg_trgm plan for a 2-character word": " / ".join(str(r[0]).strip() for r in two_chars),
        }
        speed_url = server.create_database("speed")
        big = PostgresCatalog(speed_url, "none", 4)
        rows = read_rows(root / "product1m_text" / "items.csv")
        started = time.perf_counter()
        for start in range(0, scale, 5000):
            big.upsert_many(
                [
                    (Product(item_id=f"{n:07d}", title=rows[n % len(rows)]["title"], volume=n % 977), None)
                    for n in range(start, min(scale, start + 5000))
                ]
            )
        indexing = time.perf_counter() - started
        with psycopg.connect(speed_url, autocommit=True) as db:
            db.execute("CREATE EXTENSION pg_trgm")
            db.execute("CREATE INDEX items_title_trgm ON tongkuan.items USING GIN (title gin_trgm_ops)")
            db.execute("ANALYZE tongkuan.items")
        labels = sorted({label for row in rows for label in json.loads(row["instance_labels"])})
        found["speed"] = {
            "titles": scale,
            "index_titles_per_s": scale / indexing,
            "relevance": timings(lambda q: big.keyword_search(q, limit=RECALL_AT), labels),
            "sales_desc": timings(lambda q: big.keyword_search(q, SortOrder.SALES_DESC, limit=RECALL_AT), labels),
            "pg_trgm": timings(trigram_search(speed_url), labels),
        }
        catalog.close()
        big.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="the data sets' folder, holding product1m_text/ (default: ../shared/data beside the repository)",
    )
    parser.add_argument("--scale", type=int, default=100_000, help="listings in the speed catalog (default: 100000)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="instead, the PostgreSQL catalog against pg_trgm (needs pip install -e '.[scale]' and PostgreSQL)",
    )
    args = parser.parse_args()
    if args.postgres:
        compared = postgres(args.data, args.scale)
        print(json.dumps({"postgres": compared}, ensure_ascii=False))
        return
    with tempfile.TemporaryDirectory() as workdir:
        found = quality(args.data, Path(workdir))
        for name, figures in found.items():
            print(
                f"{name:>14}: nDCG@10 {figures['ndcg@10']:.3f}  Recall@20 {figures['recall@20']:.3f}  "
                f"{figures['ms_per_query']:.2f} ms/query"
            )
        timed = speed(args.data, Path(workdir), args.scale)
        print(f"speed at {timed['titles']:,} titles: {json.dumps(timed)}")
    print(json.dumps({"quality": found, "speed": timed}))


if __name__ == "__main__":
    main()

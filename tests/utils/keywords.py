"""Keyword-search quality on Product1M titles: the measures live in `tongkuan.bench` (the
benchmark uses them too); here, what only the tests use."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tongkuan.bench import SqliteCatalog, evaluate, like_search, load_titles, read_rows, tongkuan_search
from tongkuan.domain.products import Product

__all__ = ["cocktail_listings", "compare", "load_titles"]


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


def compare(root: Path, workdir: Path) -> dict[str, dict[str, float]]:
    """Both methods on the same catalog, in one run."""
    catalog = SqliteCatalog(workdir / "keywords.db", "none", 4)
    relevant = load_titles(root, catalog)
    return {
        "queries": {"labels": float(len(relevant))},
        "tongkuan": evaluate(tongkuan_search(catalog), relevant),
        "like": evaluate(like_search(catalog.path), relevant),
    }

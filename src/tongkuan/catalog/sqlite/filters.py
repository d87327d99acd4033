"""A `ProductFilter` as SQLite conditions on items aliased `p`, shared by keyword search and
the counts a search makes."""

from __future__ import annotations

from tongkuan.domain.products import ProductFilter

PRICE = "CAST(COALESCE(p.final_price, p.reserve_price) AS REAL)"  # what a buyer pays, as a number


def filter_sql(where: ProductFilter) -> tuple[str, list[object]]:
    """SQL conditions on items `p` for a filter (each after ` AND `), and their arguments."""
    sql: list[str] = []
    args: list[object] = []
    if where.min_price is not None:
        sql.append(f"{PRICE} >= ?")
        args.append(float(where.min_price))
    if where.max_price is not None:
        sql.append(f"{PRICE} <= ?")
        args.append(float(where.max_price))
    if where.user_type is not None:
        sql.append("p.user_type = ?")
        args.append(where.user_type)
    if where.shop_title is not None:
        sql.append("p.shop_title = ? COLLATE NOCASE")
        args.append(where.shop_title)
    if where.location is not None:
        sql.append("instr(p.provcity, ?) > 0")
        args.append(where.location)
    return "".join(f" AND {c}" for c in sql), args

"""A `ProductFilter` as PostgreSQL conditions on items aliased `p`, shared by keyword search
and the counts a search makes, and the order ties are broken in."""

from __future__ import annotations

from tongkuan.domain.products import ProductFilter

PRICE = "COALESCE(p.final_price, p.reserve_price)"  # what a buyer pays
ID = 'p.item_id COLLATE "C"'  # ties in byte order, as the embedded store breaks them


def filter_sql(where: ProductFilter) -> tuple[str, dict[str, object]]:
    """SQL conditions on items `p` for a filter (each after ` AND `), and their named arguments."""
    sql: list[str] = []
    args: dict[str, object] = {}
    if where.min_price is not None:
        sql.append(f"{PRICE} >= %(min_price)s")
        args["min_price"] = where.min_price
    if where.max_price is not None:
        sql.append(f"{PRICE} <= %(max_price)s")
        args["max_price"] = where.max_price
    if where.user_type is not None:
        sql.append("p.user_type = %(user_type)s")
        args["user_type"] = where.user_type
    if where.shop_title is not None:
        sql.append("lower(p.shop_title) = lower(%(shop)s)")
        args["shop"] = where.shop_title
    if where.location is not None:
        sql.append("strpos(p.provcity, %(location)s) > 0")
        args["location"] = where.location
    return "".join(f" AND {c}" for c in sql), args

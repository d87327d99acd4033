"""A sample catalog from public data sets laid out like `shared/data` (see its README).

Grocery Store Dataset: one product per fine class, its images the clean iconic shot plus
the shoppers' training photos. Fashion Product Images: one product per catalog shot, with
its category. Fields the data sets lack (price, shop, seller, location, sales) are
synthetic, derived deterministically from the item id so every build is identical.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tongkuan.domain.categories import CATEGORY_BY_NAME

_CITIES = ("浙江 杭州", "广东 广州", "上海", "北京", "四川 成都", "江苏 苏州", "福建 泉州", "山东 青岛")
_SHOPS = ("同款优选店", "鲜生超市旗舰店", "潮流服饰专营店", "居家好物店", "品牌折扣店", "天猫超市")


def synthetic_fields(item_id: str) -> dict[str, Any]:
    """Seller-side fields the data sets lack, stable per item id (synthetic, not real data)."""
    h = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    reserve = 5 + (h % 50000) / 100
    discount = (h >> 20) % 4  # every fourth item is not discounted
    final = reserve if discount == 0 else round(reserve * (0.6 + 0.1 * discount), 2)
    return {
        "reservePrice": f"{reserve:.2f}",
        "zkFinalPrice": f"{final:.2f}",
        "shopTitle": _SHOPS[(h >> 8) % len(_SHOPS)],
        "sellerId": str(1_000_000 + (h >> 12) % 9_000_000),
        "provcity": _CITIES[(h >> 4) % len(_CITIES)],
        "userType": (h >> 30) % 2,
        "volume": (h >> 33) % 5000,
        "couponAmount": None if (h >> 40) % 3 else 5,
        "couponstartFee": None if (h >> 40) % 3 else "49",
        "url": f"https://example.com/item/{item_id}",
    }


def grocery_records(root: Path, photos_per_product: int | None = None) -> Iterator[dict[str, Any]]:
    """One record per grocery product: its iconic image first, then its train photos."""
    folder = root.resolve() / "grocery_store"
    photos: dict[str, list[str]] = {}
    category: dict[str, str] = {}
    with (folder / "labels.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            category.setdefault(row["class_id"], row["service_category"])
            if row["split"] == "train":
                photos.setdefault(row["class_id"], []).append(str(folder / row["path"]))
    with (folder / "classes.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            item_id = f"grocery-{int(row['class_id']):03d}"
            train = photos.get(row["class_id"], [])[:photos_per_product]
            cat = CATEGORY_BY_NAME.get(category.get(row["class_id"], ""))
            yield {
                "itemId": item_id,
                "title": f"{row['class_name'].replace('-', ' ')} · {row['coarse_name']}",
                "categoryName": row["coarse_name"],
                "levelOneCategoryName": "食品生鲜",
                **({"categoryId": int(cat)} if cat is not None else {}),
                **synthetic_fields(item_id),
                "images": [str(folder / row["iconic_path"]), *train],
            }


def fashion_records(root: Path, per_category: int) -> Iterator[dict[str, Any]]:
    """Up to `per_category` catalog shots of each category, one product each."""
    folder = root.resolve() / "fashion_product_images_small"
    taken: Counter[str] = Counter()
    with (folder / "labels.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            cat = CATEGORY_BY_NAME.get(row["service_category"])
            if cat is None or taken[row["service_category"]] >= per_category:
                continue
            taken[row["service_category"]] += 1
            item_id = f"fashion-{row['id']}"
            yield {
                "itemId": item_id,
                "title": row["title"],
                "categoryName": row["articleType"],
                "levelOneCategoryName": row["masterCategory"],
                "categoryId": int(cat),
                **synthetic_fields(item_id),
                "images": [str(folder / row["path"])],
            }

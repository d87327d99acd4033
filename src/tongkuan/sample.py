"""A sample catalog from public data sets laid out like `shared/data` (see its README).

Grocery Store Dataset: one product per fine class, its images the clean iconic shot plus
the shoppers' training photos. Fashion Product Images: one product per catalog shot, with
its category. Fields the data sets lack (price, shop, seller, location, sales) are
synthetic, derived deterministically from the item id so every build is identical, and
kept plausible: each made-up shop sells one kind of goods from one seller in one city, and
prices fall in a range usual for the kind (milk, yoghurt and juice ¥6 to ¥33, shoes ¥99 to ¥900).

The data sets' titles are English. So that a Chinese keyword (牛奶, 连衣裙) finds something,
each title also carries a Chinese name made up here: a hand-written translation of the
product's class (the grocery coarse class, the fashion `articleType`), not a real listing's
title. Classes without one keep their English title alone.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tongkuan.domain.categories import CATEGORY_BY_NAME

# Made-up Chinese names of the Grocery Store Dataset's coarse classes (`coarse_name`).
GROCERY_NAMES: dict[str, str] = {
    "Apple": "苹果", "Avocado": "牛油果", "Banana": "香蕉", "Kiwi": "猕猴桃", "Lemon": "柠檬",
    "Lime": "青柠", "Mango": "芒果", "Melon": "甜瓜", "Nectarine": "油桃", "Orange": "橙子",
    "Papaya": "木瓜", "Passion-Fruit": "百香果", "Peach": "桃子", "Pear": "梨", "Pineapple": "菠萝",
    "Plum": "李子", "Pomegranate": "石榴", "Red-Grapefruit": "红西柚", "Satsumas": "蜜橘",
    "Juice": "果汁", "Milk": "牛奶", "Oatghurt": "燕麦酸奶", "Oat-Milk": "燕麦奶", "Sour-Cream": "酸奶油",
    "Sour-Milk": "发酵乳", "Soyghurt": "豆乳酸奶", "Soy-Milk": "豆奶", "Yoghurt": "酸奶",
    "Asparagus": "芦笋", "Aubergine": "茄子", "Cabbage": "卷心菜", "Carrots": "胡萝卜", "Cucumber": "黄瓜",
    "Garlic": "大蒜", "Ginger": "生姜", "Leek": "韭葱", "Mushroom": "蘑菇", "Onion": "洋葱",
    "Pepper": "甜椒", "Potato": "土豆", "Red-Beet": "甜菜根", "Tomato": "番茄", "Zucchini": "西葫芦",
}  # fmt: skip

# Made-up Chinese names of Fashion Product Images' article types (`articleType`).
FASHION_NAMES: dict[str, str] = {
    "Accessory Gift Set": "配饰礼盒", "Baby Dolls": "吊带睡裙", "Backpacks": "双肩包", "Bangle": "手镯",
    "Basketballs": "篮球", "Bath Robe": "浴袍", "Belts": "腰带", "Blazers": "西装外套",
    "Body Wash and Scrub": "沐浴露", "Booties": "短靴", "Boxers": "平角内裤", "Bra": "文胸",
    "Bracelet": "手链", "Briefs": "三角内裤", "Camisoles": "吊带背心", "Capris": "七分裤",
    "Caps": "棒球帽", "Casual Shoes": "休闲鞋", "Churidar": "紧身长裤", "Clothing Set": "服装套装",
    "Clutches": "手拿包", "Compact": "粉饼", "Concealer": "遮瑕膏", "Cufflinks": "袖扣",
    "Cushion Covers": "靠垫套", "Deodorant": "止汗露", "Dresses": "连衣裙", "Duffel Bag": "旅行袋",
    "Dupatta": "披纱", "Earrings": "耳环", "Eye Cream": "眼霜", "Eyeshadow": "眼影",
    "Face Moisturisers": "面霜", "Face Serum and Gel": "精华液", "Face Wash and Cleanser": "洗面奶",
    "Flats": "平底鞋", "Flip Flops": "人字拖", "Footballs": "足球", "Formal Shoes": "正装皮鞋",
    "Foundation and Primer": "粉底液", "Fragrance Gift Set": "香水礼盒", "Free Gifts": "赠品",
    "Gloves": "手套", "Hair Colour": "染发剂", "Handbags": "手提包", "Hat": "帽子", "Headband": "发带",
    "Heels": "高跟鞋", "Highlighter and Blush": "腮红", "Innerwear Vests": "打底背心", "Jackets": "夹克",
    "Jeans": "牛仔裤", "Jeggings": "牛仔打底裤", "Jewellery Set": "首饰套装", "Jumpsuit": "连体裤",
    "Kajal and Eyeliner": "眼线笔", "Key chain": "钥匙扣", "Kurta Sets": "库尔塔套装", "Kurtas": "库尔塔长衫",
    "Kurtis": "库尔蒂上衣", "Laptop Bag": "电脑包", "Leggings": "打底裤", "Lip Care": "润唇膏",
    "Lip Gloss": "唇彩", "Lip Liner": "唇线笔", "Lip Plumper": "丰唇蜜", "Lipstick": "口红",
    "Lounge Pants": "家居裤", "Lounge Shorts": "家居短裤", "Lounge Tshirts": "家居T恤",
    "Makeup Remover": "卸妆液", "Mascara": "睫毛膏", "Mask and Peel": "面膜", "Messenger Bag": "邮差包",
    "Mobile Pouch": "手机袋", "Mufflers": "围巾", "Nail Essentials": "美甲工具", "Nail Polish": "指甲油",
    "Necklace and Chains": "项链", "Nehru Jackets": "尼赫鲁马甲", "Night suits": "睡衣套装",
    "Nightdress": "睡裙", "Patiala": "灯笼裤", "Pendant": "吊坠", "Perfume and Body Mist": "香水",
    "Ring": "戒指", "Robe": "睡袍", "Rompers": "连体短裤", "Rucksacks": "登山包", "Salwar": "宽松长裤",
    "Salwar and Dupatta": "长裤披纱套装", "Sandals": "凉鞋", "Sarees": "纱丽", "Scarves": "丝巾",
    "Shapewear": "塑身衣", "Shirts": "衬衫", "Shoe Accessories": "鞋配件", "Shoe Laces": "鞋带",
    "Shorts": "短裤", "Shrug": "短开衫", "Skirts": "半身裙", "Socks": "袜子", "Sports Sandals": "运动凉鞋",
    "Sports Shoes": "运动鞋", "Stockings": "长筒袜", "Stoles": "披肩", "Sunglasses": "太阳镜",
    "Sunscreen": "防晒霜", "Suspenders": "背带", "Sweaters": "毛衣", "Sweatshirts": "卫衣",
    "Swimwear": "泳衣", "Tablet Sleeve": "平板电脑套", "Ties": "领带", "Tights": "连裤袜", "Tops": "上衣",
    "Track Pants": "运动裤", "Tracksuits": "运动套装", "Travel Accessory": "旅行配件", "Trousers": "长裤",
    "Trunk": "四角内裤", "Tshirts": "T恤", "Tunics": "束腰上衣", "Umbrellas": "雨伞", "Waist Pouch": "腰包",
    "Waistcoat": "马甲", "Wallets": "钱包", "Watches": "手表", "Water Bottle": "水杯", "Wristbands": "护腕",
}  # fmt: skip


def with_chinese_name(title: str, names: dict[str, str], class_name: str, separator: str = " ") -> str:
    """`title` followed by the made-up Chinese name of its class, when there is one."""
    chinese = names.get(class_name)
    return f"{title}{separator}{chinese}" if chinese else title


def grocery_title(class_name: str, coarse_name: str) -> str:
    """The English title of a grocery class: its name, then its coarse class where the name
    does not already say it ("Golden Delicious · Apple", but "Banana", "Arla Standard Milk")."""
    name, coarse = class_name.replace("-", " "), coarse_name.replace("-", " ")
    return name if coarse.lower() in name.lower() else f"{name} · {coarse}"


@dataclass(frozen=True)
class Shop:
    """A made-up shop: one seller, one city, one kind of goods."""

    title: str
    seller_id: str
    provcity: str
    user_type: int  # 1: a Tmall shop, 0: a Taobao one


@dataclass(frozen=True)
class Aisle:
    """A kind of goods: the shops that sell it and the range of their list prices (yuan)."""

    shops: tuple[Shop, ...]
    low: int
    high: int


_FRUIT = (Shop("鲜果时光水果店", "2201001", "山东 烟台", 0), Shop("果园直供生鲜店", "2201002", "海南 海口", 0))
_VEGETABLES = (Shop("田园鲜蔬店", "2201003", "山东 寿光", 0), Shop("绿叶农场直营店", "2201004", "云南 昆明", 0))
_DAIRY = (Shop("鲜生超市", "2201005", "上海", 0), Shop("牧场乳品饮料店", "2201006", "内蒙古 呼和浩特", 0))
_APPAREL = (
    Shop("潮流服饰旗舰店", "3301001", "浙江 杭州", 1),
    Shop("衣橱优选女装店", "3301002", "广东 广州", 0),
    Shop("简约男装专营店", "3301003", "江苏 苏州", 1),
)
_UNDERWEAR = (Shop("舒适内衣旗舰店", "3301004", "广东 汕头", 1),)
_SHOES = (Shop("步履鞋业旗舰店", "3301005", "福建 泉州", 1), Shop("潮鞋集合店", "3301006", "浙江 温州", 0))
_BAGS = (Shop("箱包皮具专营店", "3301007", "广东 广州", 1),)
_ACCESSORIES = (Shop("腕表眼镜专营店", "3301008", "上海", 1), Shop("饰品配件小铺", "3301009", "浙江 义乌", 0))
_BEAUTY = (Shop("美妆护肤旗舰店", "3301010", "上海", 1), Shop("美妆小铺", "3301011", "浙江 杭州", 0))
_GENERAL = (Shop("居家好物店", "3301012", "江苏 苏州", 0),)

# The grocery data set's top-level classes, then the fashion categories (`service_category`).
AISLES: dict[str, Aisle] = {
    "Fruit": Aisle(_FRUIT, 5, 40),
    "Vegetables": Aisle(_VEGETABLES, 3, 20),
    "Packages": Aisle(_DAIRY, 6, 33),
    "tops": Aisle(_APPAREL, 39, 300),
    "bottoms": Aisle(_APPAREL, 59, 400),
    "dresses": Aisle(_APPAREL, 89, 600),
    "other": Aisle(_APPAREL, 39, 400),
    "underwear": Aisle(_UNDERWEAR, 19, 160),
    "shoes": Aisle(_SHOES, 99, 900),
    "bags": Aisle(_BAGS, 59, 800),
    "accessories": Aisle(_ACCESSORIES, 19, 500),
    "beauty products": Aisle(_BEAUTY, 19, 400),
    "general": Aisle(_GENERAL, 9, 200),
}


def fashion_aisle(service_category: str, master_category: str) -> str:
    """The aisle of a fashion product: its category, but free gifts and sporting goods that
    the data set files under `other` go to the general store rather than a clothes shop."""
    if service_category == "other" and master_category != "Apparel":
        return "general"
    return service_category


def shop_price(cents: int) -> int:
    """A list price as shops set them (in cents): ¥6.50, ¥29.90, ¥259.00."""
    if cents < 1000:
        return cents // 10 * 10
    if cents < 10000:
        return cents // 100 * 100 - 10
    return cents // 100 * 100


def synthetic_fields(item_id: str, aisle: str) -> dict[str, Any]:
    """Seller-side fields the data sets lack, stable per item id (synthetic, not real data):
    a shop of the product's `aisle` (a key of AISLES) and a price in the aisle's range."""
    h = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    goods = AISLES[aisle]
    shop = goods.shops[(h >> 8) % len(goods.shops)]
    reserve = shop_price(goods.low * 100 + h % ((goods.high - goods.low) * 100))
    discount = (h >> 20) % 4  # every fourth item is not discounted
    final = reserve if discount == 0 else round(reserve * (6 + discount) / 100) * 10  # 0.7 to 0.9, to 0.1 yuan
    return {
        "reservePrice": f"{reserve / 100:.2f}",
        "zkFinalPrice": f"{final / 100:.2f}",
        "shopTitle": shop.title,
        "sellerId": shop.seller_id,
        "provcity": shop.provcity,
        "userType": shop.user_type,
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
    top_level: dict[str, str] = {}
    with (folder / "labels.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            category.setdefault(row["class_id"], row["service_category"])
            top_level.setdefault(row["class_id"], row["top_level"])
            if row["split"] == "train":
                photos.setdefault(row["class_id"], []).append(str(folder / row["path"]))
    with (folder / "classes.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            item_id = f"grocery-{int(row['class_id']):03d}"
            train = photos.get(row["class_id"], [])[:photos_per_product]
            cat = CATEGORY_BY_NAME.get(category.get(row["class_id"], ""))
            yield {
                "itemId": item_id,
                "title": with_chinese_name(
                    grocery_title(row["class_name"], row["coarse_name"]), GROCERY_NAMES, row["coarse_name"]
                ),
                "categoryName": row["coarse_name"],
                "levelOneCategoryName": "食品生鲜",
                **({"categoryId": int(cat)} if cat is not None else {}),
                **synthetic_fields(item_id, top_level.get(row["class_id"], "Packages")),
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
                "title": with_chinese_name(row["title"], FASHION_NAMES, row["articleType"], " · "),
                "categoryName": row["articleType"],
                "levelOneCategoryName": row["masterCategory"],
                "categoryId": int(cat),
                **synthetic_fields(item_id, fashion_aisle(row["service_category"], row["masterCategory"])),
                "images": [str(folder / row["path"])],
            }

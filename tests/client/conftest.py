"""A real `tongkuan serve` process on 127.0.0.1 over a small catalog of grocery pictures
whose records differ in price, shop, place and Tmall/Taobao, for the client to talk to."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import APP_KEY, APP_SECRET, new_data_dir
from tests.utils.server import Server
from tongkuan.cli import main

MODEL = "efficientnet-lite0"
# itemId (the iconic picture's name), title, price paid, shop, Tmall (1) or Taobao (0), place
PRODUCTS = [
    ("Banana", "Banana 香蕉", "5", "Fresh Fruit Shop", 0, "四川 成都"),
    ("Granny-Smith", "Granny Smith apple 青苹果", "12", "Fresh Fruit Shop", 0, "四川 成都"),
    ("Kiwi", "Kiwi fruit 猕猴桃", "18", "Fresh Fruit Shop", 0, "四川 成都"),
    ("Lemon", "Lemon 柠檬", "8", "Fresh Fruit Shop", 0, "四川 成都"),
    ("Avocado", "Avocado 牛油果", "25", "Green Grocer", 1, "上海"),
    ("Cucumber", "Cucumber 黄瓜", "4", "Green Grocer", 1, "上海"),
    ("Tropicana-Apple-Juice", "Tropicana apple juice 苹果汁", "30", "Drinks Store", 1, "上海"),
    ("Alpro-Fresh-Soy-Milk", "Alpro soy milk 豆奶", "22", "Drinks Store", 1, "上海"),
]


def iconic(data_root: Path, name: str) -> Path:
    return data_root / "grocery_store" / "iconic" / f"{name}_Iconic.jpg"


class Live:
    """Where the running service is and the credentials it accepts."""

    def __init__(self, server: Server, data_root: Path) -> None:
        self.server = server
        self.data_root = data_root
        self.base_url = f"http://127.0.0.1:{server.port}"
        self.app_key = APP_KEY
        self.app_secret = APP_SECRET

    def picture(self, name: str) -> Path:
        return iconic(self.data_root, name)


@pytest.fixture(scope="package")
def live(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, data_root: Path) -> Iterator[Live]:
    """`tongkuan ingest` of PRODUCTS, then `tongkuan serve` over them, for every client test."""
    base = tmp_path_factory.mktemp("client")
    data_dir = new_data_dir(base / "data", model_cache)
    records = [
        {
            "itemId": item_id,
            "title": title,
            "reservePrice": str(int(price) * 2),
            "zkFinalPrice": price,
            "shopTitle": shop,
            "sellerId": shop.lower().replace(" ", "-"),
            "userType": user_type,
            "provcity": place,
            "volume": 10 * (i + 1),
            "images": [str(iconic(data_root, item_id))],
        }
        for i, (item_id, title, price, shop, user_type, place) in enumerate(PRODUCTS)
    ]
    (base / "items.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["ingest", str(base / "items.jsonl"), "--data-dir", str(data_dir), "--model", MODEL]
    )
    assert result.exit_code == 0, result.output
    server = Server(data_dir, MODEL)
    server.start()
    try:
        yield Live(server, data_root)
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop(signal.SIGTERM)

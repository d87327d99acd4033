"""Tiny files that declare huge pictures, sent at once on the routes anyone can reach: the
server's memory stays bounded by its decode budget, whatever the format."""

from __future__ import annotations

import io
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from tests.conftest import Service, new_data_dir
from tests.utils.fileserver import FileServer
from tests.utils.server import Server
from tongkuan.config import DEFAULT_MAX_PIXELS

SIDE = 4096  # the largest picture the default pixel limit lets through
BUDGET_MB = 300
AT_ONCE = 8


BOMB_OPTIONS: dict[str, dict[str, object]] = {
    "WEBP": {"lossless": True},
    # decoded reduced, but over coefficient buffers of the whole frame: 100 MB each
    "JPEG": {"progressive": True, "quality": 5, "subsampling": 0},
}


def bomb(fmt: str) -> bytes:
    """One colour over SIDE x SIDE pixels: a few hundred bytes to a few hundred kB for these formats."""
    out = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (250, 250, 250)).save(out, fmt, **BOMB_OPTIONS.get(fmt, {}))
    return out.getvalue()


def test_concurrent_decode_bombs_keep_the_server_within_its_decode_budget(
    tmp_path: Path, model_cache: Path, file_server: FileServer
) -> None:
    assert SIDE * SIDE <= DEFAULT_MAX_PIXELS
    bombs = {fmt: bomb(fmt) for fmt in ("WEBP", "JPEG", "PNG", "GIF")}
    assert all(len(data) < 300_000 for data in bombs.values()), {f: len(d) for f, d in bombs.items()}
    env = {
        "TONGKUAN_DECODE_MEMORY_MB": str(BUDGET_MB),
        "TONGKUAN_DECODE_WAIT": "60",
        "TONGKUAN_WEB_RATE_LIMIT_QPS": "0",
        "TONGKUAN_FETCH_PER_CLIENT": str(AT_ONCE),
    }
    server = Server(new_data_dir(tmp_path / "data", model_cache), "efficientnet-lite0", env)
    server.start()
    client = Service(f"http://127.0.0.1:{server.port}")
    try:
        warm = client.get("/taobao/upload/image", {"pic_url": file_server.url("grocery_store/iconic/Kiwi_Iconic.jpg")})
        assert warm.json()["code"] == 200
        baseline = server.peak_rss_mb()

        def upload(fmt: str) -> int:  # the page's upload: JPG, PNG or WEBP
            name, kind = ("bomb.webp", "image/webp") if fmt == "WEBP" else ("bomb.jpg", "image/jpeg")
            with httpx.Client(base_url=client.base_url, timeout=120) as http:
                answer = http.post("/web/api/upload", files={"image": (name, bombs[fmt], kind)})
                return int(answer.json()["code"])

        def search_url(fmt: str) -> int:  # a V2 search by picUrl reads GIF too
            url = file_server.put(f"bomb-{fmt}", bombs[fmt])
            params = client.signed({"picUrl": url, "pageSize": "1"})
            with httpx.Client(base_url=client.base_url, timeout=120) as http:
                return int(http.get("/taobao/image-search/url", params=params).json()["code"])

        with ThreadPoolExecutor(AT_ONCE * 2) as pool:
            uploads = list(pool.map(upload, ["WEBP", "JPEG"] * AT_ONCE))
            searches = list(pool.map(search_url, ["PNG", "GIF"] * (AT_ONCE // 2)))
        peak = server.peak_rss_mb()
        print(f"decode bombs: peak RSS {baseline:.0f} MB before, {peak:.0f} MB after (budget {BUDGET_MB} MB)")
        assert uploads == [200] * AT_ONCE * 2 and searches == [200] * AT_ONCE  # valid pictures, only large
        # without the budget, eight of the WebPs alone take over 2 GB at once, and the progressive
        # JPEGs, charged only their reduced pixels, took 400 MB past it
        assert peak - baseline < BUDGET_MB + 150, (baseline, peak)
    finally:
        client.client.close()
        server.stop(signal.SIGKILL)

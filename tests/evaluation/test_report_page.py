"""The page of a check set's misses, opened in Chromium: one row per miss, every picture
shown, nothing wider than the screen. TONGKUAN_SCREENSHOTS keeps its screenshot
(docs/screenshots/eval-report.png is the one the README shows)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.evaluation.test_eval import run, shop, write_checks  # noqa: F401  (shop: the fixture)
from tests.web.test_page import ARGS, CHROMIUM, DESKTOP


def test_the_misses_page_shows_each_miss_with_its_pictures(
    shop: tuple[Path, list[dict[str, object]]],  # noqa: F811
    data_root: Path,
    tmp_path: Path,
) -> None:
    data_dir, raw = shop
    write_checks(tmp_path / "checks.jsonl", data_root, raw)
    report = tmp_path / "misses"
    code, out = run(
        "eval", str(tmp_path / "checks.jsonl"), "--data-dir", str(data_dir), "--json", "--report", str(report)
    )
    assert code == 0, out
    figures = json.loads(out[out.index('{"model"') :].splitlines()[0])
    misses = round(figures["n"] * (1 - figures["R@1"]))
    assert misses > 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport=DESKTOP)
        page.goto((report / "index.html").as_uri())
        page.wait_for_load_state("load")
        assert page.locator("tbody tr").count() == misses
        shown = page.locator("img").evaluate_all("images => images.map(i => i.complete && i.naturalWidth > 0)")
        assert len(shown) == 2 * misses and all(shown)  # each query picture and what came first
        assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
        assert "ranked" in page.locator("tbody").inner_text()
        folder = Path(os.environ.get("TONGKUAN_SCREENSHOTS", tmp_path))
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "eval-report.png"))
        assert (folder / "eval-report.png").stat().st_size > 10_000
        browser.close()

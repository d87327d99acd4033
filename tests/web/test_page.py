"""The search page in a real browser (Debian's headless Chromium driven by Playwright)
against the service on 127.0.0.1, over the session catalog.

Set TONGKUAN_SCREENSHOTS to a folder to keep the desktop and phone screenshots
(docs/screenshots holds the ones the README shows).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from tests.conftest import APP_SECRET, Service
from tests.utils.fileserver import FileServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("TONGKUAN_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)
# Without the background-networking flags Chromium keeps calling home, which a closed
# network refuses; root needs --no-sandbox.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MILK = "grocery_store/images/val/Packages/Milk/Arla-Standard-Milk/Arla-Standard-Milk_001.jpg"
SHELF = "grocery_store/images/val/Packages/Yoghurt/Valio-Vanilla-Yoghurt/Valio-Vanilla-Yoghurt_001.jpg"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, service: Service) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", base_url=service.base_url)
    page = context.new_page()
    sent: list[str] = []
    refused: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else None)
    page.goto("/")
    yield page
    context.close()
    leaked = [url for url in sent if "appKey" in url or "sign=" in url or APP_SECRET in url]
    assert not leaked, leaked  # the page never sends credentials
    assert not refused, refused  # nothing the page does breaks its content security policy


def search_params(page: Page, action) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Run `action` and return the query of the search request it causes, once results render."""
    with page.expect_response(lambda r: "/web/api/search" in r.url) as info:
        action()
    response = info.value
    assert response.status == 200, response.text()
    page.wait_for_function("() => document.getElementById('status').hidden")
    return {k: v[0] for k, v in parse_qs(urlsplit(response.url).query).items()}


def upload(page: Page, path: Path) -> dict[str, str]:
    return search_params(page, lambda: page.set_input_files("#file", str(path)))


def item_ids(page: Page) -> list[str]:
    return page.locator("#grid .card").evaluate_all("cards => cards.map(c => c.dataset.itemId)")


def keep_screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TONGKUAN_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=False)
    assert path.stat().st_size > 10_000
    return path


def test_a_photo_finds_its_product_with_regions_categories_and_items(
    page: Page, data_root: Path, tmp_path: Path
) -> None:
    params = upload(page, data_root / MILK)
    assert "region" not in params and params["pageNo"] == "0"
    cards = page.locator("#grid .card")
    expect(cards).to_have_count(20)
    assert item_ids(page)[0] == "grocery-041"  # Arla Standard Milk
    first = cards.first
    expect(first.locator(".title")).to_contain_text("Arla Standard Milk")
    assert first.locator("a").get_attribute("href") == "https://example.com/item/grocery-041"
    expect(first.locator(".now")).not_to_be_empty()
    expect(first.locator(".score")).to_contain_text("%")
    expect(first.locator(".shop")).not_to_be_empty()
    expect(first.locator(".place")).not_to_be_empty()
    discounted = page.locator("#grid .card .was:not(:empty)")
    assert discounted.count() >= 1  # the struck-through original price
    expect(page.locator("#boxes .box.main")).to_have_count(1)
    expect(page.locator("#categories .chip")).to_have_count(5)  # all + the top four
    expect(page.locator("#categories .chip.active")).to_have_text("全部")
    keep_screenshot(page, "desktop.png", tmp_path)


def test_clicking_a_region_or_dragging_a_box_searches_it(page: Page, data_root: Path) -> None:
    upload(page, data_root / SHELF)
    boxes = page.locator("#boxes .box")
    assert boxes.count() >= 1
    target = boxes.nth(boxes.count() - 1)
    region = target.get_attribute("data-region")
    params = search_params(page, lambda: target.click())
    assert params["region"] == region
    expect(page.locator("#boxes .box.searched")).to_have_attribute("data-region", region or "")

    stage = page.locator("#stage").bounding_box()
    assert stage is not None

    def drag() -> None:
        page.mouse.move(stage["x"] + stage["width"] * 0.2, stage["y"] + stage["height"] * 0.2)
        page.mouse.down()
        page.mouse.move(stage["x"] + stage["width"] * 0.5, stage["y"] + stage["height"] * 0.45, steps=8)
        page.mouse.move(stage["x"] + stage["width"] * 0.7, stage["y"] + stage["height"] * 0.7, steps=8)
        page.mouse.up()

    params = search_params(page, drag)
    x1, x2, y1, y2 = (int(v) for v in params["region"].split(","))
    width, height = page.evaluate(
        "() => [document.getElementById('query-image').naturalWidth, document.getElementById('query-image').naturalHeight]"
    )
    assert abs(x1 - 0.2 * width) < 0.05 * width and abs(x2 - 0.7 * width) < 0.05 * width
    assert abs(y1 - 0.2 * height) < 0.05 * height and abs(y2 - 0.7 * height) < 0.05 * height
    expect(page.locator("#grid .card")).to_have_count(20)


def test_paging_and_category_filter(page: Page, data_root: Path) -> None:
    upload(page, data_root / MILK)
    expect(page.locator("#prev")).to_be_disabled()
    page_one = item_ids(page)
    params = search_params(page, lambda: page.click("#next"))
    assert params["pageNo"] == "20"
    expect(page.locator("#summary")).to_contain_text("21–40")
    assert not set(page_one) & set(item_ids(page))
    search_params(page, lambda: page.click("#prev"))
    assert item_ids(page) == page_one

    chip = page.locator("#categories .chip").nth(2)  # the second predicted category
    category = chip.get_attribute("data-category")
    params = search_params(page, lambda: chip.click())
    assert params["categoryId"] == category and params["pageNo"] == "0"
    expect(page.locator(f'#categories .chip.active[data-category="{category}"]')).to_have_count(1)
    search_params(page, lambda: page.locator('#categories .chip[data-category=""]').click())
    assert item_ids(page) == page_one


def test_paste_drop_and_url_each_start_a_search(page: Page, data_root: Path, file_server: FileServer) -> None:
    photo = base64.b64encode((data_root / MILK).read_bytes()).decode()
    make_file = f"""() => {{
        const bytes = Uint8Array.from(atob("{photo}"), c => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "milk.jpg", {{type: "image/jpeg"}}));
        return data;
    }}"""
    search_params(
        page,
        lambda: page.evaluate(
            f"() => document.dispatchEvent(new ClipboardEvent('paste', {{clipboardData: ({make_file})()}}))"
        ),
    )
    assert item_ids(page)[0] == "grocery-041"
    page.goto("/")
    search_params(
        page,
        lambda: page.evaluate(
            f"() => document.getElementById('drop').dispatchEvent(new DragEvent('drop', {{dataTransfer: ({make_file})(), bubbles: true, cancelable: true}}))"
        ),
    )
    assert item_ids(page)[0] == "grocery-041"
    page.goto("/")
    page.fill("#url", file_server.url(MILK))
    search_params(page, lambda: page.click("#url-form button"))
    assert item_ids(page)[0] == "grocery-041"


def test_errors_say_what_went_wrong(page: Page, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    page.set_input_files("#file", str(broken))
    status = page.locator("#status.error")
    expect(status).to_be_visible()
    expect(status).to_contain_text("图片无法识别")

    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + os.urandom(4 * 1024 * 1024))  # over 3 MB and not decodable
    page.set_input_files("#file", str(huge))
    expect(page.locator("#status.error")).to_contain_text("图片过大")

    page.fill("#url", "http://127.0.0.1:9/nothing-listens-here.jpg")
    page.click("#url-form button")
    expect(page.locator("#status.error")).to_contain_text("图片下载失败")
    expect(page.locator("#workspace")).to_be_hidden()


def test_english_labels_and_a_phone_screen(browser: Browser, service: Service, data_root: Path, tmp_path: Path) -> None:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="en-US", base_url=service.base_url
    )
    page = context.new_page()
    page.goto("/")
    expect(page.locator("#drop strong")).to_have_text("Drop, paste or choose a product photo")
    expect(page.locator(".camera")).to_be_visible()
    assert page.locator("#camera").get_attribute("capture") == "environment"
    upload(page, data_root / MILK)
    expect(page.locator("#grid .card")).to_have_count(20)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    columns = page.locator("#grid").evaluate("g => getComputedStyle(g).gridTemplateColumns.split(' ').length")
    assert columns == 2
    page.evaluate("() => window.scrollTo(0, document.getElementById('workspace').offsetTop - 64)")
    keep_screenshot(page, "phone.png", tmp_path)
    page.click("#lang")
    expect(page.locator("#results-title")).to_have_text("相似商品")
    context.close()


def test_the_page_and_its_api_hold_no_secret_and_refuse_other_sites(service: Service) -> None:
    for path in ("/", "/web/app.js", "/web/app.css"):
        response = httpx.get(service.base_url + path)
        assert response.status_code == 200 and APP_SECRET not in response.text
    foreign = httpx.get(
        service.base_url + "/web/api/search", params={"imageId": "0" * 32}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 401 and foreign.json()["code"] == 401
    cross = httpx.get(
        service.base_url + "/web/api/search", params={"imageId": "0" * 32}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 401
    assert httpx.get(service.base_url + "/web/nothing.js").json()["code"] == 400


def keyword_params(page: Page, action) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Run `action` and return the query of the keyword search it causes, once results render."""
    with page.expect_response(lambda r: "/web/api/keyword" in r.url) as info:
        action()
    response = info.value
    assert response.status == 200, response.text()
    page.wait_for_function("() => document.getElementById('status').hidden")
    return {k: v[0] for k, v in parse_qs(urlsplit(response.url).query).items()}


def rewrite_searches(page: Page, change) -> None:  # type: ignore[no-untyped-def]
    """Answer the page's picture searches with the service's answers passed through `change`."""

    def handle(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        change(body["data"])
        route.fulfill(response=response, json=body)

    page.route("**/web/api/search?*", handle)


def click_at(page: Page, x: float, y: float) -> None:
    """Click the query picture at (x, y) in its own pixels."""
    layer = page.locator("#boxes").bounding_box()
    assert layer is not None
    width, height = page.evaluate(
        "() => [document.getElementById('query-image').naturalWidth, document.getElementById('query-image').naturalHeight]"
    )
    page.mouse.click(layer["x"] + layer["width"] * x / width, layer["y"] + layer["height"] * y / height)


def test_the_main_subject_stays_offered_after_choosing_another_region(page: Page, data_root: Path) -> None:
    upload(page, data_root / MILK)  # its main subject is the picture found inside the photo
    first = item_ids(page)
    main = page.locator("#boxes .box.main")
    expect(main).to_have_count(1)
    region = main.get_attribute("data-region")
    other = page.locator("#boxes .box:not(.main)").first
    chosen = other.get_attribute("data-region")
    params = search_params(page, lambda: other.dispatch_event("click"))
    assert params["region"] == chosen
    expect(page.locator("#boxes .box.searched")).to_have_attribute("data-region", chosen or "")
    expect(main).to_have_attribute("data-region", region or "")
    expect(main.locator(".tag")).to_have_text("主体")
    params = search_params(page, lambda: main.dispatch_event("click"))
    assert "region" not in params  # back to the first search, exactly
    assert item_ids(page) == first
    expect(page.locator("#boxes .box.searched")).to_have_attribute("data-region", region or "")


def test_a_click_picks_the_smallest_box_holding_it(page: Page, data_root: Path) -> None:
    main, small, big = "270,340,250,340", "60,120,60,120", "30,250,30,230"

    def nested(data: dict) -> None:  # type: ignore[type-arg]
        data["picInfo"]["multiRegion"] = [{"region": r} for r in (main, small, big)]  # the big one last

    rewrite_searches(page, nested)
    upload(page, data_root / MILK)
    assert search_params(page, lambda: click_at(page, 90, 90))["region"] == small
    assert search_params(page, lambda: click_at(page, 200, 180))["region"] == big
    assert search_params(page, lambda: click_at(page, 100, 50))["region"] == big  # above the small one
    assert search_params(page, lambda: click_at(page, 70, 110))["region"] == small


def test_prices_always_show_two_decimals(page: Page, data_root: Path) -> None:
    def priced(data: dict) -> None:  # type: ignore[type-arg]
        data["data"][0].update(zkFinalPrice="14.2", reservePrice="50")
        data["data"][1].update(zkFinalPrice="9", reservePrice="9")

    rewrite_searches(page, priced)
    upload(page, data_root / MILK)
    cards = page.locator("#grid .card")
    expect(cards.nth(0).locator(".now")).to_have_text("14.20")
    expect(cards.nth(0).locator(".was")).to_have_text("50.00")
    expect(cards.nth(1).locator(".now")).to_have_text("9.00")
    expect(cards.nth(1).locator(".was")).to_be_empty()
    for text in page.locator("#grid .card .now, #grid .card .was:not(:empty)").all_inner_texts():
        assert re.fullmatch(r"\d+\.\d\d", text), text


def test_errors_are_plain_words_in_the_chosen_language(browser: Browser, service: Service, tmp_path: Path) -> None:
    context = browser.new_context(viewport=DESKTOP, locale="en-US", base_url=service.base_url)
    page = context.new_page()
    page.goto("/")
    status = page.locator("#status.error")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    page.set_input_files("#file", str(broken))
    expect(status).to_contain_text("could not be read as a picture")
    page.fill("#url", "http://10.1.2.3/photo.jpg")
    page.click("#url-form button")
    expect(status).to_contain_text("cannot be used")
    page.fill("#url", "http://127.0.0.1:9/nothing-listens-here.jpg")
    page.click("#url-form button")
    expect(status).to_contain_text("could not be downloaded")
    page.route(
        "**/web/api/upload",
        lambda route: route.fulfill(
            status=429,
            json={
                "code": 429,
                "message": "请求过于频繁: appKey web:127.0.0.1 is over its limit",
                "data": {"error": "rate_limited"},
            },
        ),
    )
    page.click("#url-form button")
    expect(status).to_contain_text("Too many searches")
    page.unroute("**/web/api/upload")
    page.route(
        "**/web/api/upload",
        lambda route: route.fulfill(
            status=503, json={"code": 503, "message": "服务暂不可用: milvus down", "data": None}
        ),
    )
    page.click("#url-form button")
    expect(status).to_contain_text("temporarily unavailable")
    text = status.inner_text()
    assert not re.search(r"[\u4e00-\u9fff]", text) and "milvus" not in text, text
    page.click("#lang")
    page.click("#url-form button")
    expect(status).to_contain_text("服务暂时不可用")
    context.close()


def test_a_keyword_search_lists_products_sorted_and_filtered_by_price(page: Page) -> None:
    def search_words() -> None:
        page.fill("#keyword", "Milk")
        page.click("#keyword-form button[type=submit]")

    params = keyword_params(page, search_words)
    assert params["keyword"] == "Milk" and params["page_no"] == "1" and "filter" not in params
    cards = page.locator("#grid .card")
    expect(cards.first).to_be_visible()
    assert cards.count() >= 6
    expect(cards.first.locator(".title")).to_contain_text("Milk")
    expect(cards.first.locator(".score")).to_be_hidden()  # no similarity for words
    expect(page.locator("#summary")).to_contain_text("共")
    expect(page.locator("#stage")).to_be_hidden()

    params = keyword_params(page, lambda: page.select_option("#sort", "price_asc"))
    assert params["sort"] == "price_asc" and params["page_no"] == "1"
    prices = [float(t) for t in page.locator("#grid .card .now").all_inner_texts()]
    assert prices == sorted(prices)

    def price_range() -> None:
        page.fill("#price-min", "50")
        page.fill("#price-max", "300")
        page.click("#keyword-form button[type=submit]")

    params = keyword_params(page, price_range)
    assert params["filter"] == "price:50-300" and params["sort"] == "price_asc"
    prices = [float(t) for t in page.locator("#grid .card .now").all_inner_texts()]
    assert prices and prices == sorted(prices) and all(50 <= p <= 300 for p in prices)
    page.fill("#price-min", "")
    page.fill("#price-max", "")
    params = keyword_params(page, lambda: page.click("#keyword-form button[type=submit]"))
    assert "filter" not in params and params["sort"] == "price_asc"
    page.fill("#keyword", "Men")  # fashion titles: several pages
    keyword_params(page, lambda: page.click("#keyword-form button[type=submit]"))
    expect(page.locator("#prev")).to_be_disabled()
    params = keyword_params(page, lambda: page.click("#next"))
    assert params["page_no"] == "2" and params["keyword"] == "Men"
    expect(page.locator("#summary")).to_contain_text("21–40")


def test_a_picture_search_after_a_keyword_search_shows_the_picture_again(page: Page, data_root: Path) -> None:
    page.fill("#keyword", "牛奶")
    keyword_params(page, lambda: page.click("#keyword-form button[type=submit]"))
    expect(page.locator("#grid .card .title").first).to_contain_text("牛奶")
    upload(page, data_root / MILK)
    expect(page.locator("#stage")).to_be_visible()
    expect(page.locator("#grid .card .score").first).to_contain_text("%")
    assert item_ids(page)[0] == "grocery-041"

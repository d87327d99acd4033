"""The search page in a real browser (Debian's headless Chromium driven by Playwright)
against the service on 127.0.0.1, over the session catalog; the words read on a picture
against a small catalog of cartons served with reading on.

Set TONGKUAN_SCREENSHOTS to a folder to keep the desktop and phone screenshots
(docs/screenshots holds the ones the README shows).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import combinations
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from tests.conftest import APP_SECRET, Service, as_records, new_data_dir, serve, settings_for
from tests.search.test_reading import carton
from tests.utils.fileserver import FileServer
from tongkuan.api.app import create_app
from tongkuan.engine import Engine

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
APPLE = "grocery_store/images/val/Fruit/Apple/Golden-Delicious/Golden-Delicious_001.jpg"
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 812}
TALL_PHONE = {"width": 390, "height": 844}
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    yield browser
    browser.close()


@contextmanager
def opened(
    browser: Browser, service: Service, secrets: tuple[str, ...] = ("appKey", "sign=", APP_SECRET)
) -> Iterator[Page]:
    """`service`'s page in a fresh desktop browser context (zh-CN). On leaving, the page must
    have sent none of `secrets` in an address and done nothing its content security policy
    refused."""
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", base_url=service.base_url)
    page = context.new_page()
    sent: list[str] = []
    refused: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.on("console", lambda message: refused.append(message.text) if "Content Security" in message.text else None)
    page.goto("/")
    try:
        yield page
    finally:
        context.close()
    leaked = [url for url in sent if any(secret in url for secret in secrets)]
    assert not leaked, leaked  # the page never sends credentials
    assert not refused, refused  # nothing the page does breaks its content security policy


@pytest.fixture
def page(browser: Browser, service: Service) -> Iterator[Page]:
    with opened(browser, service) as page:
        yield page


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
    # a box holding another subject is not drawn, but the main subject's box always is
    main, small, other = "30,250,30,230", "60,120,60,120", "270,340,250,340"

    def nested(data: dict) -> None:  # type: ignore[type-arg]
        data["picInfo"]["multiRegion"] = [{"region": r} for r in (main, other, small)]  # the small one last

    rewrite_searches(page, nested)
    upload(page, data_root / MILK)
    assert search_params(page, lambda: click_at(page, 90, 90))["region"] == small
    assert "region" not in search_params(page, lambda: click_at(page, 200, 180))  # the main subject
    assert search_params(page, lambda: click_at(page, 70, 110))["region"] == small
    assert "region" not in search_params(page, lambda: click_at(page, 100, 50))  # above the small one
    assert search_params(page, lambda: click_at(page, 300, 300))["region"] == other


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
        page.fill("#price-min", "10")
        page.fill("#price-max", "20")
        page.click("#keyword-form button[type=submit]")

    params = keyword_params(page, price_range)
    assert params["filter"] == "price:10-20" and params["sort"] == "price_asc"
    prices = [float(t) for t in page.locator("#grid .card .now").all_inner_texts()]
    assert prices and prices == sorted(prices) and all(10 <= p <= 20 for p in prices)
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


def box_layout(page: Page) -> dict:  # type: ignore[type-arg]
    """The picture's box on the screen, and each drawn box and label: kind, region, rectangle, colours."""
    return page.evaluate(
        """() => {
        const rect = (node) => { const r = node.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
        const boxes = [...document.querySelectorAll('#boxes .box')].map((box) => {
            const tag = box.querySelector('.tag');
            return {
                region: box.dataset.region, main: box.classList.contains('main'), searched: box.classList.contains('searched'),
                border: getComputedStyle(box).borderTopColor, tag: tag.textContent, tagRect: rect(tag),
                tagColour: getComputedStyle(tag).backgroundColor,
            };
        });
        return {picture: rect(document.getElementById('query-image')), boxes};
    }"""
    )


def assert_labels_inside_the_picture_and_apart(page: Page) -> None:
    layout = box_layout(page)
    picture, labels = layout["picture"], [(b["tag"], b["tagRect"]) for b in layout["boxes"]]
    assert labels
    for text, r in labels:
        inside = r["left"] >= picture["left"] - 0.5 and r["right"] <= picture["right"] + 0.5
        assert inside and r["top"] >= picture["top"] - 0.5 and r["bottom"] <= picture["bottom"] + 0.5, (
            text,
            r,
            picture,
        )
    for (one, a), (other, b) in combinations(labels, 2):
        apart = a["right"] <= b["left"] + 0.5 or b["right"] <= a["left"] + 0.5
        assert apart or a["bottom"] <= b["top"] + 0.5 or b["bottom"] <= a["top"] + 0.5, (one, a, other, b)


def parse(region: str) -> tuple[int, ...]:
    return tuple(int(v) for v in region.split(","))


def nearly_holds(outer: str, inner: str) -> bool:
    """Whether most (85%) of box `inner` lies inside box `outer` (regions as x1,x2,y1,y2)."""
    a, b = parse(outer), parse(inner)
    width = min(a[1], b[1]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[2], b[2])
    return width > 0 and height > 0 and width * height >= 0.85 * (b[1] - b[0]) * (b[3] - b[2])


def test_box_labels_stay_inside_the_picture_and_never_cover_each_other(page: Page, data_root: Path) -> None:
    for photo in (MILK, SHELF, APPLE):
        upload(page, data_root / photo)
        assert_labels_inside_the_picture_and_apart(page)

    # the main subject against the top edge, a box beside it and one drawn at its corner
    def crowded(data: dict) -> None:  # type: ignore[type-arg]
        data["picInfo"]["multiRegion"] = [{"region": r} for r in ("10,340,0,300", "20,120,0,100", "200,330,10,120")]

    rewrite_searches(page, crowded)
    upload(page, data_root / MILK)
    assert_labels_inside_the_picture_and_apart(page)
    layer = page.locator("#boxes").bounding_box()
    assert layer is not None
    scale = layer["width"] / 348

    def drag() -> None:
        page.mouse.move(layer["x"] + 12 * scale, layer["y"] + 3 * scale)
        page.mouse.down()
        page.mouse.move(layer["x"] + 150 * scale, layer["y"] + 150 * scale, steps=8)
        page.mouse.up()

    search_params(page, drag)
    expect(page.locator("#boxes .box .tag")).to_have_count(4)
    expect(page.locator("#boxes .box.searched .tag")).to_have_text("自选")
    assert_labels_inside_the_picture_and_apart(page)
    page.set_viewport_size(PHONE)  # the labels move with the picture's new size
    page.wait_for_timeout(100)
    assert_labels_inside_the_picture_and_apart(page)


def test_the_searched_box_and_the_main_box_differ_in_colour_as_the_legend_says(page: Page, data_root: Path) -> None:
    upload(page, data_root / MILK)
    legend = page.locator("#legend")
    expect(legend).to_be_visible()
    expect(legend.locator(".key.main")).to_be_hidden()  # the main subject is the box searched
    other = page.locator("#boxes .box:not(.main)").first
    search_params(page, lambda: other.dispatch_event("click"))
    expect(legend.locator(".key.main")).to_be_visible()
    boxes = box_layout(page)["boxes"]
    main = next(b for b in boxes if b["main"])
    searched = next(b for b in boxes if b["searched"])
    assert not main["searched"] and main["border"] != searched["border"] and main["tagColour"] != searched["tagColour"]
    swatch = "k => getComputedStyle(k.querySelector('i')).backgroundColor"
    assert legend.locator(".key.main").evaluate(swatch) == main["border"] == main["tagColour"]
    assert legend.locator(".key.searched").evaluate(swatch) == searched["border"] == searched["tagColour"]
    expect(legend.locator(".key.main")).to_contain_text("主体")


def test_only_a_few_boxes_are_drawn_none_nearly_holding_another(page: Page, data_root: Path) -> None:
    for photo in (MILK, SHELF, APPLE):
        with page.expect_response(lambda r: "/web/api/search" in r.url) as info:
            upload(page, data_root / photo)
        found = [r["region"] for r in info.value.json()["data"]["picInfo"]["multiRegion"]]
        boxes = box_layout(page)["boxes"]
        drawn = [b["region"] for b in boxes]
        assert found[0] in drawn and set(drawn) <= set(found) and len(drawn) <= 4, (photo, found, drawn)
        for outer in (b["region"] for b in boxes if not b["main"]):
            assert not any(nearly_holds(outer, inner) for inner in drawn if inner != outer), (photo, drawn)

    main, group, pair, one, twin, *apart = (
        "154,258,104,347",
        "23,320,33,348",  # holds the main subject
        "60,272,76,288",  # holds `one`
        "87,169,98,272",
        "88,170,99,270",  # nearly `one` again
        "280,330,10,60",
        "10,50,10,50",
        "290,340,300,345",
    )

    def nested(data: dict) -> None:  # type: ignore[type-arg]
        data["picInfo"]["multiRegion"] = [{"region": r} for r in (main, group, pair, one, twin, *apart)]

    rewrite_searches(page, nested)
    with page.expect_response(lambda r: "/web/api/search" in r.url) as info:
        upload(page, data_root / MILK)
    assert len(info.value.json()["data"]["picInfo"]["multiRegion"]) == 8  # the answer keeps them all
    drawn = [b["region"] for b in box_layout(page)["boxes"]]
    assert main in drawn and one in drawn and len(drawn) == 4
    assert not {group, pair, twin} & set(drawn)
    expect(page.locator("#boxes .box:not(.main) .tag")).to_have_text(["区域 1", "区域 2", "区域 3"])


def phone(browser: Browser, service: Service, reduced_motion: str) -> Page:
    context = browser.new_context(
        viewport=TALL_PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        base_url=service.base_url,
        reduced_motion=reduced_motion,  # type: ignore[arg-type]
    )
    context.add_init_script(
        "window.scrolls = []; const scrollTo = window.scrollTo.bind(window);"
        "window.scrollTo = (...a) => { window.scrolls.push(a[0] && a[0].behavior); return scrollTo(...a); };"
    )
    page = context.new_page()
    page.goto("/")
    return page


FIRST_CARD_IN_VIEW = """() => {
    const card = document.querySelector('#grid .card').getBoundingClientRect();
    const header = document.querySelector('.top').getBoundingClientRect().bottom;
    return card.top >= header - 1 && card.bottom <= innerHeight + 1;
}"""


def test_a_phone_search_scrolls_the_results_into_view(browser: Browser, service: Service, data_root: Path) -> None:
    page = phone(browser, service, "reduce")
    upload(page, data_root / MILK)
    assert page.evaluate("() => window.scrolls") == ["auto"]  # no animation when motion is reduced
    assert page.evaluate(FIRST_CARD_IN_VIEW)
    start = page.evaluate("() => document.querySelector('.results').getBoundingClientRect().top + scrollY")
    assert start < TALL_PHONE["height"]  # the results start on the first screen
    assert page.evaluate("() => document.documentElement.scrollWidth") <= TALL_PHONE["width"]
    page.click("#lang")  # English words are longer
    assert page.evaluate("() => document.documentElement.scrollWidth") <= TALL_PHONE["width"]
    page.context.close()

    page = phone(browser, service, "no-preference")
    upload(page, data_root / MILK)
    assert page.evaluate("() => window.scrolls") == ["smooth"]
    page.wait_for_function(FIRST_CARD_IN_VIEW)
    page.context.close()


def test_a_desktop_search_does_not_scroll_when_the_results_are_in_view(page: Page, data_root: Path) -> None:
    upload(page, data_root / MILK)
    assert page.evaluate("() => window.scrollY") == 0


def test_the_pager_shows_only_when_there_is_another_page(page: Page, data_root: Path) -> None:
    pager = page.locator(".pager")
    expect(pager).to_be_hidden()
    upload(page, data_root / MILK)
    expect(pager).to_be_visible()
    page.fill("#keyword", "牛奶")  # six products: one page
    keyword_params(page, lambda: page.click("#keyword-form button[type=submit]"))
    expect(page.locator("#grid .card")).to_have_count(6)
    expect(pager).to_be_hidden()
    page.fill("#keyword", "Men")
    keyword_params(page, lambda: page.click("#keyword-form button[type=submit]"))
    expect(pager).to_be_visible()
    page.fill("#keyword", "没有这种商品")
    keyword_params(page, lambda: page.click("#keyword-form button[type=submit]"))
    expect(page.locator("#grid .empty")).to_be_visible()
    expect(pager).to_be_hidden()

    def fewer(data: dict) -> None:  # type: ignore[type-arg]
        data["data"] = data["data"][:5]

    rewrite_searches(page, fewer)
    upload(page, data_root / MILK)
    expect(page.locator("#grid .card")).to_have_count(5)
    expect(pager).to_be_hidden()


def aria_labels(page: Page) -> list[str]:
    return page.evaluate(
        "() => [...document.querySelectorAll('[aria-label]')].filter(n => n.getClientRects().length)"
        ".map(n => n.getAttribute('aria-label'))"
    )


def test_screen_reader_labels_follow_the_chosen_language(page: Page, data_root: Path) -> None:
    upload(page, data_root / MILK)
    chinese = aria_labels(page)
    assert len(chinese) >= 5 and all(CJK.search(label) for label in chinese), chinese
    page.click("#lang")
    english = aria_labels(page)
    assert len(english) == len(chinese) and all(label and not CJK.search(label) for label in english), english


def test_the_api_link_leads_somewhere(page: Page, service: Service) -> None:
    href = page.locator("footer a").get_attribute("href")
    assert href and httpx.get(service.base_url + href).status_code == 200


# cartons of one shape and colour, told apart by what they say
CARTONS = {"oatly": ["Oatly", "Oat Drink 1L"], "alpro": ["Alpro", "Soya Drink 1L"], "yili": ["伊利", "纯牛奶 250ml"]}


@pytest.fixture(scope="module")
def reading_service(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service over a few cartons, reading the text on query pictures."""
    root = tmp_path_factory.mktemp("cartons")
    records: list[dict[str, object]] = []
    for item_id, lines in CARTONS.items():
        path = root / f"{item_id}.png"
        carton(lines).save(path)
        records.append({"itemId": item_id, "title": f"carton {item_id}", "images": [str(path)]})
    engine = Engine(settings_for(new_data_dir(root / "data", model_cache), model="efficientnet-lite0", read_text="on"))
    try:
        assert not engine.ingester().ingest(as_records(records)).failures
        with serve(create_app(engine.settings, engine=engine)) as service:
            yield service
    finally:
        engine.close()


def all_params(page: Page, action) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Like `search_params`, keeping parameters sent empty."""
    with page.expect_response(lambda r: "/web/api/search" in r.url) as info:
        action()
    assert info.value.status == 200, info.value.text()
    page.wait_for_function("() => document.getElementById('status').hidden")
    return {k: v[0] for k, v in parse_qs(urlsplit(info.value.url).query, keep_blank_values=True).items()}


def chip_words(page: Page) -> list[str]:
    return page.locator("#read-words .word span").all_inner_texts()


@pytest.fixture
def reading_page(browser: Browser, reading_service: Service) -> Iterator[Page]:
    with opened(browser, reading_service) as page:
        yield page


def test_the_words_read_on_a_photo_show_as_chips_to_remove_or_search_by(reading_page: Page, tmp_path: Path) -> None:
    page = reading_page
    expect(page.locator("#read")).to_be_hidden()
    photo = tmp_path / "oatly.png"
    carton(CARTONS["oatly"], size=420, background=(200, 190, 170), shot=True).save(photo)

    params = all_params(page, lambda: page.set_input_files("#file", str(photo)))
    assert "words" not in params  # the server reads the picture itself
    assert item_ids(page)[0] == "oatly"
    read = page.locator("#read")
    expect(read).to_be_visible()
    expect(read.locator("h3")).to_have_text("图中文字")
    expect(page.locator("#read-search")).to_have_text("按文字搜索")
    words = chip_words(page)
    assert "oatly" in words and len(words) >= 2, words
    expect(page.locator("#read-words")).to_have_attribute("aria-label", "图中文字")
    expect(page.locator("#read-words .word").filter(has_text="oatly").locator("button")).to_have_attribute(
        "aria-label", "去掉 oatly"
    )

    # removing a word searches the same picture, in the same category, from the first page
    category = page.locator("#categories .chip[data-category]:not([data-category=''])").first
    chosen = all_params(page, lambda: category.click())["categoryId"]
    params = all_params(page, lambda: page.locator("#read-words .word").first.locator("button").click())
    left = words[1:]
    assert params["words"] == ",".join(left) and params["categoryId"] == chosen and params["pageNo"] == "0"
    expect(page.locator("#read-words .word span")).to_have_text(left)

    # and the words left search titles and what the pictures show, as the keyword box does
    with page.expect_response(lambda r: "/web/api/keyword" in r.url) as info:
        page.click("#read-search")
    assert parse_qs(urlsplit(info.value.url).query)["keyword"] == [" ".join(left)]
    page.wait_for_function("() => document.getElementById('status').hidden")
    expect(page.locator("#keyword")).to_have_value(" ".join(left))
    expect(page.locator("#results-title")).to_contain_text(" ".join(left))
    expect(page.locator("#grid .card").first).to_be_visible()

    # a new picture is read afresh, in English once the shopper switches
    params = all_params(page, lambda: page.set_input_files("#file", str(photo)))
    assert "words" not in params and "categoryId" not in params
    expect(page.locator("#read-words .word span")).to_have_text(words)
    page.click("#lang")
    expect(read.locator("h3")).to_have_text("Words on the picture")
    expect(page.locator("#read-search")).to_have_text("Search by these words")
    expect(page.locator("#read-words")).to_have_attribute("aria-label", "Words on the picture")
    expect(page.locator("#read-words .word").filter(has_text="oatly").locator("button")).to_have_attribute(
        "aria-label", "Remove oatly"
    )

    # with every word removed, the picture alone ranks the products and no chips are left
    for n in range(len(words)):
        params = all_params(page, lambda: page.locator("#read-words .word").first.locator("button").click())
        assert params["words"] == ",".join(words[n + 1 :])
    expect(read).to_be_hidden()
    expect(page.locator("#grid .card").first).to_be_visible()


# --- operator mode: saving a search as a check ------------------------------------------

ADMIN_TOKEN = "admin-token-for-page-tests-0123"
GROCERIES = {"milk": "Arla-Standard-Milk", "juice": "Bravo-Apple-Juice", "banana": "Banana"}


@pytest.fixture(scope="module")
def operator_service(data_root: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service over a few groceries, with the admin API on."""
    root = tmp_path_factory.mktemp("operator")
    records: list[dict[str, object]] = [
        {
            "itemId": item_id,
            "title": name.replace("-", " "),
            "reservePrice": "12.50",
            "images": [data_root / "grocery_store" / "iconic" / f"{name}_Iconic.jpg"],
        }
        for item_id, name in GROCERIES.items()
    ]
    settings = settings_for(
        new_data_dir(root / "data", model_cache), model="efficientnet-lite0", admin_token=ADMIN_TOKEN
    )
    engine = Engine(settings)
    try:
        assert not engine.ingester().ingest(as_records(records)).failures
        with serve(create_app(engine.settings, engine=engine)) as service:
            yield service
    finally:
        engine.close()


@pytest.fixture
def operator_page(browser: Browser, operator_service: Service) -> Iterator[Page]:
    with opened(browser, operator_service, secrets=(ADMIN_TOKEN, "nope-not-the-token")) as page:
        yield page  # the token never travels in an address...
        stored = page.evaluate("() => JSON.stringify(localStorage)")
    assert ADMIN_TOKEN not in stored  # ...nor stays beyond the browser tab


def saved_checks(service: Service) -> list[dict[str, object]]:
    response = httpx.get(
        service.base_url + "/admin/checks", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def sign_in(page: Page, token: str) -> None:
    if page.locator("#operator-panel").is_hidden():
        page.click("#operator")
    page.fill("#operator-token", token)
    page.click("#operator-form button[type=submit]")


def card(page: Page, item_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#grid .card[data-item-id="{item_id}"]')


def test_an_operator_saves_a_search_as_a_check_and_downloads_the_check_set(
    operator_page: Page, operator_service: Service, data_root: Path
) -> None:
    page = operator_page
    with page.expect_response(lambda r: "/web/api/upload" in r.url) as uploaded:
        upload(page, data_root / MILK)
    image_id = uploaded.value.json()["data"]["imageId"]
    assert item_ids(page)[0] == "milk"
    expect(page.locator("#grid .card .same")).to_have_count(0)  # shoppers see no operator tools
    expect(page.locator("#operator-panel")).to_be_hidden()
    expect(page.locator("#checks-download")).to_be_hidden()

    sign_in(page, ADMIN_TOKEN)
    assert page.evaluate("() => sessionStorage.getItem('tongkuan.adminToken')") == ADMIN_TOKEN
    expect(page.locator("#operator-token")).to_be_hidden()
    expect(page.locator("#checks-download")).to_have_text("下载检查集")
    expect(page.locator("#grid .card .same")).to_have_count(page.locator("#grid .card").count())
    button = card(page, "milk").locator(".same")
    expect(button).to_have_text("是同款")
    expect(button).to_have_attribute("aria-label", "是同款：Arla Standard Milk")

    with page.expect_request(lambda r: r.url.endswith("/admin/checks") and r.method == "POST") as posted:
        button.click()
    request = posted.value
    assert request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert request.post_data_json == {"imageId": image_id, "itemIds": ["milk"]}  # no region chosen
    expect(button).to_have_text("已保存")
    expect(button).to_be_disabled()
    assert saved_checks(operator_service)[-1] == {"imageId": image_id, "itemIds": ["milk"]}

    # another region of the same photo is another check, saved with its region
    other = page.locator("#boxes .box:not(.main)").first
    region = other.get_attribute("data-region")
    search_params(page, lambda: other.dispatch_event("click"))
    button = card(page, "milk").locator(".same")
    expect(button).to_be_enabled()
    with page.expect_response(lambda r: r.url.endswith("/admin/checks") and r.request.method == "POST") as answered:
        button.click()
    assert answered.value.status == 200
    assert answered.value.request.post_data_json == {"imageId": image_id, "itemIds": ["milk"], "region": region}
    assert saved_checks(operator_service)[-1] == {"imageId": image_id, "itemIds": ["milk"], "region": region}

    # in English, saved stays saved
    page.click("#lang")
    expect(button).to_have_text("Saved")
    expect(card(page, "juice").locator(".same")).to_have_text("Same product")
    expect(card(page, "juice").locator(".same")).to_have_attribute("aria-label", "Same product: Bravo Apple Juice")
    expect(page.locator("#checks-download")).to_have_text("Download check set")
    expect(page.locator("#sign-out")).to_have_text("Sign out")

    # the check set, as the admin API gives it, saved by the browser as checks.jsonl
    expected = httpx.get(
        operator_service.base_url + "/admin/checks", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).text
    with page.expect_download() as downloading:
        page.click("#checks-download")
    download = downloading.value
    assert download.suggested_filename == "checks.jsonl" and download.url.startswith("blob:")
    assert Path(download.path()).read_text(encoding="utf-8") == expected
    assert len(expected.splitlines()) >= 2

    page.reload()  # the token lasts as long as the tab
    expect(page.locator("#operator-tools")).to_be_visible()
    page.click("#sign-out")
    assert page.evaluate("() => sessionStorage.getItem('tongkuan.adminToken')") is None
    expect(page.locator("#operator-token")).to_be_visible()
    expect(page.locator("#grid .card .same")).to_have_count(0)
    expect(page.locator("#checks-download")).to_be_hidden()


def test_a_refused_token_is_forgotten_and_a_server_error_is_shown(
    operator_page: Page, operator_service: Service, data_root: Path
) -> None:
    page = operator_page
    upload(page, data_root / MILK)
    before = saved_checks(operator_service)
    sign_in(page, "nope-not-the-token")
    with page.expect_response(lambda r: r.url.endswith("/admin/checks")) as answered:
        card(page, "milk").locator(".same").click()
    assert answered.value.status == 401
    expect(page.locator("#status.error")).to_contain_text("管理令牌被拒绝")
    assert page.evaluate("() => sessionStorage.getItem('tongkuan.adminToken')") is None
    expect(page.locator("#grid .card .same")).to_have_count(0)
    assert saved_checks(operator_service) == before

    # a product deleted since the search: the server's own words say why nothing was saved
    sign_in(page, ADMIN_TOKEN)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deleted = httpx.delete(operator_service.base_url + "/admin/products/banana", headers=admin)
    assert deleted.status_code == 200, deleted.text
    try:
        with page.expect_response(lambda r: r.url.endswith("/admin/checks")) as answered:
            card(page, "banana").locator(".same").click()
        assert answered.value.status == 400
        message = answered.value.json()["message"]
        expect(page.locator("#status.error")).to_have_text(message)
        expect(card(page, "banana").locator(".same")).to_be_enabled()  # may be tried again
        assert page.evaluate("() => sessionStorage.getItem('tongkuan.adminToken')") == ADMIN_TOKEN
    finally:
        picture = data_root / "grocery_store" / "iconic" / "Banana_Iconic.jpg"
        restored = httpx.put(
            operator_service.base_url + "/admin/products/banana",
            headers=admin,
            data={"product": json.dumps({"title": "Banana", "reservePrice": "12.50"})},
            files=[("images", ("Banana_Iconic.jpg", picture.read_bytes()))],
            timeout=60,
        )
        assert restored.status_code == 200, restored.text
    assert saved_checks(operator_service) == before

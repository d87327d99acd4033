"""The blocking client against a real `tongkuan serve`: upload and search by file, by URL
and by catalog item, paging, filters and regions, keyword, shop and item routes, the 1688
route, and error envelopes raised as typed exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.client.conftest import PRODUCTS, Live
from tests.utils.fileserver import FileServer
from tongkuan.client import (
    NO_RETRY,
    AuthenticationError,
    BadRequestError,
    Client,
    Filter,
    Region,
    SortOrder,
)


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with Client(live.base_url, live.app_key, live.app_secret, retry=NO_RETRY) as client:
        yield client


def test_search_by_file_uploads_then_finds_the_product_first(client: Client, live: Live) -> None:
    found = client.search_file(live.picture("Banana"), page_size=3)
    assert [item.item_id for item in found.items][:1] == ["Banana"]
    assert found.page_no == 0 and found.page_size == len(found.items) == 3
    banana = found.items[0]
    assert banana.title == "Banana 香蕉" and banana.zk_final_price == Decimal("5")
    assert banana.reserve_price == Decimal("10") and banana.shop_title == "Fresh Fruit Shop"
    assert banana.provcity == "四川 成都" and banana.user_type == 0 and banana.score is None
    assert banana.pic_url.startswith("//127.0.0.1:")
    assert found.categories and found.categories[0].score > 0
    assert found.main_region is not None and found.regions and found.regions[0] == found.main_region


def test_search_by_bytes_and_the_upload_s_own_url(client: Client, live: Live) -> None:
    uploaded = client.upload(live.picture("Kiwi").read_bytes())
    assert uploaded.image_id and uploaded.pic_url and uploaded.pic_url.startswith("//127.0.0.1:")
    by_url = client.search_url(f"http:{uploaded.pic_url}", page_size=2)
    assert by_url.items[0].item_id == "Kiwi"
    assert client.search_file(live.picture("Kiwi").read_bytes(), page_size=2).items == by_url.items


def test_search_by_a_url_on_another_loopback_server(client: Client, file_server: FileServer) -> None:
    found = client.search_url(file_server.url("grocery_store/iconic/Avocado_Iconic.jpg"), page_size=2)
    assert found.items[0].item_id == "Avocado"
    fetched = client.upload_url(file_server.url("grocery_store/iconic/Avocado_Iconic.jpg"))
    assert fetched.image_id


def test_search_by_item_id_names_that_item_first(client: Client) -> None:
    found = client.search_item("Tropicana-Apple-Juice", page_size=4, with_score=True)
    assert found.items[0].item_id == "Tropicana-Apple-Juice"
    assert all(item.score is not None for item in found.items)
    scores = [item.score or 0.0 for item in found.items]
    assert scores == sorted(scores, reverse=True)


def test_pages_by_offset_concatenate_to_one_ranking(client: Client, live: Live) -> None:
    picture = live.picture("Granny-Smith")
    whole = [item.item_id for item in client.search_file(picture, page_size=6).items]
    first = client.search_file(picture, page_size=3)
    second = client.search_file(picture, page_no=first.next_page_no, page_size=3)
    assert first.next_page_no == 3 and second.page_no == 3
    assert [item.item_id for item in [*first.items, *second.items]] == whole
    assert len(set(whole)) == 6


def test_a_price_filter_leaves_out_what_it_excludes(client: Client, live: Live) -> None:
    found = client.search_file(live.picture("Banana"), page_size=10, filter=Filter(min_price=10, max_price="25"))
    prices = {item.item_id: item.zk_final_price for item in found.items}
    expected = {item_id for item_id, _, price, *_ in PRODUCTS if 10 <= int(price) <= 25}
    assert set(prices) == expected and "Banana" not in prices
    tmall = client.search_file(live.picture("Banana"), filter=Filter(user_type=1, location="上海"))
    assert tmall.items and all(item.user_type == 1 and item.provcity == "上海" for item in tmall.items)


def test_region_crop_category_and_threshold_reach_the_service(client: Client, live: Live) -> None:
    boxed = client.search_file(live.picture("Lemon"), region=Region(20, 180, 10, 190), page_size=2)
    assert boxed.main_region == Region(20, 180, 10, 190)
    whole = client.search_file(live.picture("Lemon"), crop=False, page_size=2)
    assert whole.main_region == Region(0, 198, 0, 198)
    strict = client.search_file(live.picture("Lemon"), score_threshold=0.999, with_score=True)
    assert [item.item_id for item in strict.items][:1] == ["Lemon"]
    assert all(item.score is not None and item.score >= 0.999 for item in strict.items)
    chosen = client.search_file(live.picture("Lemon"), category=int(boxed.categories[0].category_id))
    assert chosen.items


def test_keyword_search_pages_sorts_and_filters(client: Client) -> None:
    apples = client.keyword_search("apple")
    assert {item.item_id for item in apples.items} == {"Granny-Smith", "Tropicana-Apple-Juice"}
    assert apples.total == 2 and apples.page_no == 1
    by_price = client.keyword_search("apple", sort=SortOrder.PRICE_DESC)
    assert [item.item_id for item in by_price.items] == ["Tropicana-Apple-Juice", "Granny-Smith"]
    second = client.keyword_search("apple", sort="price_desc", page_no=2, page_size=1)
    assert [item.item_id for item in second.items] == ["Granny-Smith"] and second.total == 2
    tmall = client.keyword_search("apple", filter="userType:1")
    assert [item.item_id for item in tmall.items] == ["Tropicana-Apple-Juice"]


def test_shop_and_item_routes(client: Client) -> None:
    shops = client.shop_search("fruit")
    assert [shop.shop_title for shop in shops.shops] == ["Fresh Fruit Shop"]
    assert shops.shops[0].item_count == 4 and shops.shops[0].items
    details = client.item("Avocado")
    assert details.item_id == "Avocado" and details.shop_title == "Green Grocer"
    assert details.pictures and details.pictures[0].picture_url("http").startswith("http://127.0.0.1:")
    assert details.category_id is not None and details.category_predicted is True


def test_the_1688_route_and_v1_search(client: Client, live: Live, file_server: FileServer) -> None:
    offers = client.image_query(image_url=file_server.url("grocery_store/iconic/Cucumber_Iconic.jpg"), page_size=3)
    assert offers.offers[0].offer_id == "Cucumber" and offers.current_page == 1
    assert offers.total_records == len(PRODUCTS) and offers.total_page == 3
    assert offers.offers[0].price_info.price == Decimal("4")
    by_file = client.image_query_file(live.picture("Cucumber"), begin_page=2, page_size=3, with_score=True)
    assert by_file.current_page == 2 and len(by_file.offers) == 3 and by_file.offers[0].score is not None
    uploaded = client.upload(live.picture("Cucumber"))
    assert client.search_v1(image_id=uploaded.image_id)[0].item_id == "Cucumber"


def test_an_error_envelope_raises_the_typed_error_with_code_and_message(client: Client) -> None:
    with pytest.raises(BadRequestError) as broken:
        client.search_url("ftp://127.0.0.1/nothing.jpg")
    assert broken.value.code == 400 == broken.value.status_code
    assert "picUrl" in broken.value.message and broken.value.trace_id
    with pytest.raises(BadRequestError, match="pageSize"):
        client.search_url("http://127.0.0.1/x.jpg", page_size=50)
    with pytest.raises(BadRequestError, match="商品不存在"):
        client.item("no-such-item")


def test_wrong_credentials_raise_authentication_error_and_plain_secret_works(live: Live) -> None:
    with Client(live.base_url, live.app_key, "wrong", retry=NO_RETRY) as wrong:
        with pytest.raises(AuthenticationError) as refused:
            wrong.keyword_search("apple")
    assert refused.value.code == 401 and "sign" in refused.value.message
    with Client(live.base_url, live.app_key, live.app_secret, plain_secret=True) as testing:
        assert testing.keyword_search("apple").total == 2

"""The asyncio client against a real `tongkuan serve`: the same calls as the blocking one,
awaited, including several at once on one connection pool."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tests.client.conftest import Live
from tests.utils.fileserver import FileServer
from tongkuan.client import NO_RETRY, AsyncClient, AuthenticationError, BadRequestError, Filter, SortOrder

T = TypeVar("T")


def run(live: Live, test: Callable[[AsyncClient], Awaitable[T]]) -> T:
    async def main() -> T:
        async with AsyncClient(live.base_url, live.app_key, live.app_secret, retry=NO_RETRY) as client:
            return await test(client)

    return asyncio.run(main())


def test_async_search_by_file_url_and_item(live: Live, file_server: FileServer) -> None:
    async def test(client: AsyncClient) -> None:
        by_file = await client.search_file(live.picture("Banana"), page_size=2)
        by_url = await client.search_url(file_server.url("grocery_store/iconic/Banana_Iconic.jpg"), page_size=2)
        by_item = await client.search_item("Banana", page_size=2)
        for found in (by_file, by_url, by_item):
            assert found.items[0].item_id == "Banana" and found.categories and found.main_region is not None

    run(live, test)


def test_async_paging_and_a_filter(live: Live) -> None:
    async def test(client: AsyncClient) -> None:
        picture = live.picture("Avocado").read_bytes()
        whole, first, second = await asyncio.gather(
            client.search_file(picture, page_size=4),
            client.search_file(picture, page_size=2),
            client.search_file(picture, page_no=2, page_size=2),
        )
        assert [i.item_id for i in whole.items] == [i.item_id for i in [*first.items, *second.items]]
        cheap = await client.search_file(picture, filter=Filter(max_price=10))
        assert cheap.items and all(i.zk_final_price is not None and i.zk_final_price <= 10 for i in cheap.items)

    run(live, test)


def test_async_keyword_shop_item_and_1688(live: Live) -> None:
    async def test(client: AsyncClient) -> None:
        apples = await client.keyword_search("apple", sort=SortOrder.PRICE_ASC)
        assert [i.item_id for i in apples.items] == ["Granny-Smith", "Tropicana-Apple-Juice"]
        assert (await client.shop_search("drinks")).shops[0].shop_title == "Drinks Store"
        assert (await client.item("Kiwi")).title == "Kiwi fruit 猕猴桃"
        offers = await client.image_query_file(live.picture("Kiwi"), page_size=2)
        assert offers.offers[0].offer_id == "Kiwi" and offers.total_records == 8
        uploaded = await client.upload_url(f"http:{(await client.upload(live.picture('Kiwi'))).pic_url}")
        assert (await client.search_v1(image_id=uploaded.image_id))[0].item_id == "Kiwi"

    run(live, test)


def test_async_error_envelopes_raise_typed_errors(live: Live) -> None:
    async def test(client: AsyncClient) -> None:
        with pytest.raises(BadRequestError) as broken:
            await client.search_url("http://127.0.0.1/x.jpg", region="5,1,0,9")
        assert broken.value.code == 400 and "region" in broken.value.message

    run(live, test)

    async def wrong() -> None:
        async with AsyncClient(live.base_url, live.app_key, "wrong", retry=NO_RETRY) as client:
            with pytest.raises(AuthenticationError) as refused:
                await client.keyword_search("apple")
        assert refused.value.code == 401

    asyncio.run(wrong())

"""`Client` (httpx.Client) and `AsyncClient` (httpx.AsyncClient): the same methods, one
blocking and one awaitable. Each only sends: the calls and flows (`calls`), signing
(`signing`), reading answers (`envelope`) and the retry policy (`retry`) are shared."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack
from urllib.parse import urlsplit

import httpx

from tongkuan.client import calls
from tongkuan.client.calls import Call, Flow, ImageSource
from tongkuan.client.envelope import read
from tongkuan.client.errors import RateLimitError, ServiceUnavailableError
from tongkuan.client.models import (
    SCHEME,
    ImageSearchResult,
    Item,
    ItemDetails,
    KeywordPage,
    OfferPage,
    ShopPage,
    Upload,
)
from tongkuan.client.retry import DEFAULT_RETRY, RetryPolicy
from tongkuan.client.signing import Credentials, hide_secrets_in_httpx_logs
from tongkuan.client.values import Filter, ImageSearchOptions, SortOrder

T = TypeVar("T")

DAJI_BASE_URL = "https://openapi.dajisaas.com"
"""DAJI's own service, which speaks the same API: pass it as `base_url` to use it instead."""
DEFAULT_TIMEOUT = 60.0
USER_AGENT = "tongkuan-client"


class _Base:
    """What both clients hold: where to send, how to sign, how to retry."""

    def __init__(self, base_url: str, app_key: str, app_secret: str, plain_secret: bool, retry: RetryPolicy) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = Credentials(app_key, app_secret, plain_secret)
        self.retry = retry
        # protocol-relative picture URLs in answers are completed with the service's scheme
        self.scheme = urlsplit(self.base_url).scheme or "https"
        self._context = {SCHEME: self.scheme}  # models read from answers remember it
        hide_secrets_in_httpx_logs()

    def _request_args(self, call: Call[Any]) -> dict[str, Any]:
        signed = self.credentials.apply(call.params)
        return {
            "method": call.method,
            "url": self.base_url + call.path,
            "params": None if call.form else signed,
            "data": signed if call.form else None,
            "headers": {"User-Agent": USER_AGENT},
        }

    def _read(self, response: httpx.Response, call: Call[T]) -> T:
        return read(response, partial(call.parse, context=self._context))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, app_key={self.credentials.app_key!r})"


class Client(_Base):
    """A blocking client of the DAJI-style API of tongkuan, or of DAJI itself.

    >>> with Client("http://127.0.0.1:8000", "my-app", "my-secret") as client:  # doctest: +SKIP
    ...     found = client.search_file("shoe.jpg", page_size=5)
    ...     print(found.items[0].title, found.categories[0].category_id)

    Pass `http_client` to use an `httpx.Client` of your own (proxies, a transport, limits);
    the client then leaves closing it to you. Answers of 429 and 503 are retried as `retry`
    says; other errors raise `ApiError` at once, and transport errors are httpx's own.
    """

    def __init__(
        self,
        base_url: str,
        app_key: str,
        app_secret: str,
        *,
        plain_secret: bool = False,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, app_key, app_secret, plain_secret, retry)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, call: Call[T]) -> T:
        attempt = 1
        while True:
            response = self._http.request(**self._request_args(call))
            try:
                return self._read(response, call)
            except (RateLimitError, ServiceUnavailableError) as refused:
                wait = self.retry.delay(attempt, refused.retry_after)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    def upload(self, image: ImageSource) -> Upload:
        """Upload a picture (bytes or a file path) by POST; search it later by its URL or id."""
        return self._run(calls.single(calls.upload(image)))

    def upload_url(self, pic_url: str) -> Upload:
        """Have the service fetch and keep the picture at `pic_url`."""
        return self._run(calls.single(calls.upload_url(pic_url)))

    def search_url(self, pic_url: str, **options: Unpack[ImageSearchOptions]) -> ImageSearchResult:
        """Image search V2.0: products that look like the picture at `pic_url`."""
        return self._run(calls.single(calls.image_search(pic_url, options)))

    def search_file(self, image: ImageSource, **options: Unpack[ImageSearchOptions]) -> ImageSearchResult:
        """Upload a picture (bytes or a file path), then search it (two requests)."""
        return self._run(calls.search_file(image, options, self.scheme))

    def search_item(self, item_id: str, **options: Unpack[ImageSearchOptions]) -> ImageSearchResult:
        """Products that look like catalog product `item_id`, searched by its first picture."""
        return self._run(calls.search_item(item_id, options, self.scheme))

    def search_v1(self, *, image_id: str | None = None, pic_url: str | None = None) -> list[Item]:
        """Image search V1.0: the first items for an upload's id (wins) or a URL, no paging."""
        return self._run(calls.single(calls.image_search_v1(image_id, pic_url)))

    def keyword_search(
        self,
        keyword: str,
        *,
        page_no: int | None = None,
        page_size: int | None = None,
        sort: SortOrder | str | None = None,
        filter: Filter | str | None = None,
    ) -> KeywordPage:
        """Products whose titles match `keyword`; `page_no` counts from 1."""
        return self._run(calls.single(calls.keyword_search(keyword, page_no, page_size, sort, filter)))

    def shop_search(self, keyword: str, *, page_no: int | None = None, page_size: int | None = None) -> ShopPage:
        """Shops whose names hold every word of `keyword`, with their best sellers."""
        return self._run(calls.single(calls.shop_search(keyword, page_no, page_size)))

    def item(self, item_id: str, *, language: str | None = None) -> ItemDetails:
        """One product's full record with every picture."""
        return self._run(calls.single(calls.item_details(item_id, language)))

    def image_query(
        self,
        *,
        image_url: str | None = None,
        image_id: str | None = None,
        begin_page: int = 1,
        page_size: int | None = None,
        with_score: bool | None = None,
    ) -> OfferPage:
        """1688 image search by a URL or an upload's id (wins); `begin_page` counts from 1."""
        return self._run(calls.single(calls.image_query(image_id, image_url, begin_page, page_size, with_score)))

    def image_query_file(
        self, image: ImageSource, *, begin_page: int = 1, page_size: int | None = None, with_score: bool | None = None
    ) -> OfferPage:
        """1688 image search by a picture's bytes or file: upload it, then search its imageId."""
        return self._run(calls.image_query_file(image, begin_page, page_size, with_score))


class AsyncClient(_Base):
    """`Client`'s twin for asyncio: the same methods, awaited.

    >>> async with AsyncClient("http://127.0.0.1:8000", "my-app", "my-secret") as client:  # doctest: +SKIP
    ...     found = await client.search_url("https://example.com/shoe.jpg", page_size=5)
    """

    def __init__(
        self,
        base_url: str,
        app_key: str,
        app_secret: str,
        *,
        plain_secret: bool = False,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, app_key, app_secret, plain_secret, retry)
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _send(self, call: Call[T]) -> T:
        attempt = 1
        while True:
            response = await self._http.request(**self._request_args(call))
            try:
                return self._read(response, call)
            except (RateLimitError, ServiceUnavailableError) as refused:
                wait = self.retry.delay(attempt, refused.retry_after)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1

    async def _run(self, flow: Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._send(call))
        except StopIteration as done:
            result: T = done.value
            return result

    async def upload(self, image: ImageSource) -> Upload:
        """Upload a picture (bytes or a file path) by POST; search it later by its URL or id."""
        return await self._run(calls.single(calls.upload(image)))

    async def upload_url(self, pic_url: str) -> Upload:
        """Have the service fetch and keep the picture at `pic_url`."""
        return await self._run(calls.single(calls.upload_url(pic_url)))

    async def search_url(self, pic_url: str, **options: Unpack[ImageSearchOptions]) -> ImageSearchResult:
        """Image search V2.0: products that look like the picture at `pic_url`."""
        return await self._run(calls.single(calls.image_search(pic_url, options)))

    async def search_file(self, image: ImageSource, **options: Unpack[ImageSearchOptions]) -> ImageSearchResult:
        """Upload a picture (bytes or a file path), then search it (two requests)."""
        return await self._run(calls.search_file(image, options, self.scheme))

    async def search_item(self, item_id: str, **options: Unpack[ImageSearchOptions]) -> ImageSearchResult:
        """Products that look like catalog product `item_id`, searched by its first picture."""
        return await self._run(calls.search_item(item_id, options, self.scheme))

    async def search_v1(self, *, image_id: str | None = None, pic_url: str | None = None) -> list[Item]:
        """Image search V1.0: the first items for an upload's id (wins) or a URL, no paging."""
        return await self._run(calls.single(calls.image_search_v1(image_id, pic_url)))

    async def keyword_search(
        self,
        keyword: str,
        *,
        page_no: int | None = None,
        page_size: int | None = None,
        sort: SortOrder | str | None = None,
        filter: Filter | str | None = None,
    ) -> KeywordPage:
        """Products whose titles match `keyword`; `page_no` counts from 1."""
        return await self._run(calls.single(calls.keyword_search(keyword, page_no, page_size, sort, filter)))

    async def shop_search(self, keyword: str, *, page_no: int | None = None, page_size: int | None = None) -> ShopPage:
        """Shops whose names hold every word of `keyword`, with their best sellers."""
        return await self._run(calls.single(calls.shop_search(keyword, page_no, page_size)))

    async def item(self, item_id: str, *, language: str | None = None) -> ItemDetails:
        """One product's full record with every picture."""
        return await self._run(calls.single(calls.item_details(item_id, language)))

    async def image_query(
        self,
        *,
        image_url: str | None = None,
        image_id: str | None = None,
        begin_page: int = 1,
        page_size: int | None = None,
        with_score: bool | None = None,
    ) -> OfferPage:
        """1688 image search by a URL or an upload's id (wins); `begin_page` counts from 1."""
        return await self._run(calls.single(calls.image_query(image_id, image_url, begin_page, page_size, with_score)))

    async def image_query_file(
        self, image: ImageSource, *, begin_page: int = 1, page_size: int | None = None, with_score: bool | None = None
    ) -> OfferPage:
        """1688 image search by a picture's bytes or file: upload it, then search its imageId."""
        return await self._run(calls.image_query_file(image, begin_page, page_size, with_score))

"""Every route as a `Call` (method, path, parameters in wire names, how to read the data),
and the operations that take two calls as `Flow`s: generators that yield each call and
receive its result. Both clients run these, so neither builds a request or reads an answer
of its own."""

from __future__ import annotations

import base64
import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from pydantic import TypeAdapter

from tongkuan.client.errors import ProtocolError
from tongkuan.client.models import (
    ImageSearchResult,
    Item,
    ItemDetails,
    KeywordPage,
    OfferPage,
    ShopPage,
    Upload,
    absolute_url,
)
from tongkuan.client.values import Filter, ImageSearchOptions, Region, SortOrder

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

IMAGE_SEARCH = "/taobao/image-search/url"
IMAGE_SEARCH_V1 = "/taobao/traffic/item/imgsearch"
UPLOAD = "/taobao/upload/image"
KEYWORD_SEARCH = "/taobao/traffic/item/search"
SHOP_SEARCH = "/taobao/traffic/item/shop/search"
ITEM_DETAILS = "/taobao/traffic/item/get"
IMAGE_QUERY_1688 = "/alibaba/product/imageQuery"
UPLOAD_1688 = "/alibaba/upload/image"

ImageSource: TypeAlias = bytes | str | os.PathLike[str]
"""A picture to upload: its bytes, or the path of its file."""


class Parser(Protocol[T_co]):
    """Reads an answer's `data`; `context` reaches every model read (pydantic's validation
    context: the clients pass the scheme of their service in it)."""

    def __call__(self, data: Any, /, *, context: dict[str, Any] | None = None) -> T_co: ...


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request, before it is signed: sent as a query string, or (`form`) as a POST form."""

    path: str
    params: Mapping[str, str | None]
    parse: Parser[T]
    form: bool = False

    @property
    def method(self) -> str:
        return "POST" if self.form else "GET"


Flow: TypeAlias = Generator[Call[Any], Any, T]
"""An operation: yields each call, is sent back its parsed data, returns the result."""


def single(call: Call[T]) -> Flow[T]:
    """The flow of an operation that is one call."""
    result: T = yield call
    return result


def _text(value: object) -> str | None:
    """A parameter's wire text: booleans as true/false, enums by value, None left out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Region | Filter):
        return value.to_param()
    if isinstance(value, SortOrder):
        return value.value
    if isinstance(value, int):  # Category too: its code, not its name
        return str(int(value))
    return str(value)


_V2_NAMES = {
    "page_no": "pageNo",
    "page_size": "pageSize",
    "category": "categoryId",
    "crop": "crop",
    "region": "region",
    "filter": "filter",
    "with_score": "withScore",
    "score_threshold": "scoreThreshold",
    "distinct_product_id": "distinctProductId",
}


def image_search(pic_url: str, options: ImageSearchOptions) -> Call[ImageSearchResult]:
    """Image search V2.0 by picture URL."""
    unknown = set(options) - set(_V2_NAMES)
    if unknown:
        raise TypeError(f"unknown image search options: {', '.join(sorted(unknown))}")
    params = {_V2_NAMES[name]: _text(value) for name, value in options.items()}
    return Call(IMAGE_SEARCH, {"picUrl": pic_url, **params}, ImageSearchResult.model_validate)


def read_image(image: ImageSource) -> bytes:
    """The bytes of a picture given as bytes or as a file path."""
    if isinstance(image, bytes | bytearray | memoryview):
        return bytes(image)
    return Path(image).read_bytes()


def upload(image: ImageSource, path: str = UPLOAD) -> Call[Upload]:
    """Upload by POST: the picture as the base64 form field `image_base64` (signed too)."""
    encoded = base64.b64encode(read_image(image)).decode("ascii")
    return Call(path, {"image_base64": encoded}, Upload.model_validate, form=True)


def upload_url(pic_url: str, path: str = UPLOAD) -> Call[Upload]:
    """Upload by GET: the service fetches `pic_url` and keeps it."""
    return Call(path, {"pic_url": pic_url}, Upload.model_validate)


_ITEMS = TypeAdapter(list[Item])


def image_search_v1(image_id: str | None, pic_url: str | None) -> Call[list[Item]]:
    """Image search V1.0: an upload's id (wins) or a picture URL; no paging."""
    return Call(IMAGE_SEARCH_V1, {"image_id": image_id, "pic_url": pic_url}, _ITEMS.validate_python)


def keyword_search(
    keyword: str, page_no: int | None, page_size: int | None, sort: SortOrder | str | None, filter: Filter | str | None
) -> Call[KeywordPage]:
    """Keyword search over titles; `page_no` counts from 1."""
    params = {"keyword": keyword, "page_no": page_no, "page_size": page_size, "sort": sort, "filter": filter}
    return Call(KEYWORD_SEARCH, {name: _text(value) for name, value in params.items()}, KeywordPage.model_validate)


def shop_search(keyword: str, page_no: int | None, page_size: int | None) -> Call[ShopPage]:
    """Shops whose names hold every word of `keyword`."""
    params = {"keyword": keyword, "page_no": _text(page_no), "page_size": _text(page_size)}
    return Call(SHOP_SEARCH, params, ShopPage.model_validate)


def item_details(item_id: str, language: str | None) -> Call[ItemDetails]:
    """One product's full record."""
    return Call(ITEM_DETAILS, {"item_id": item_id, "language": language}, ItemDetails.model_validate)


def image_query(
    image_id: str | None, image_url: str | None, begin_page: int, page_size: int | None, with_score: bool | None
) -> Call[OfferPage]:
    """1688 image search: an upload's id (wins) or a picture URL; `begin_page` counts from 1."""
    params = {
        "imageId": image_id,
        "imageUrl": image_url,
        "beginPage": _text(begin_page),
        "pageSize": _text(page_size),
        "withScore": _text(with_score),
    }
    return Call(IMAGE_QUERY_1688, params, OfferPage.model_validate)


def search_file(image: ImageSource, options: ImageSearchOptions, scheme: str) -> Flow[ImageSearchResult]:
    """Upload the picture, then search by the URL the service keeps it under.

    Image search V2.0 takes only a URL, so this needs an upload answer with `picUrl`
    (this service gives one; raises `ProtocolError` where an answer has none)."""
    uploaded: Upload = yield upload(image)
    if not uploaded.pic_url:
        raise ProtocolError(
            f"the upload answer has imageId {uploaded.image_id!r} but no picUrl, so image search V2.0 "
            "cannot be pointed at it; search by a URL of your own, or with image_search_v1(image_id=...)"
        )
    result: ImageSearchResult = yield image_search(absolute_url(uploaded.pic_url, scheme), options)
    return result


def search_item(item_id: str, options: ImageSearchOptions, scheme: str) -> Flow[ImageSearchResult]:
    """Products that look like a catalog product: its details, then a search by its first picture."""
    details: ItemDetails = yield item_details(item_id, None)
    url = details.pictures[0].pic_url if details.pictures else details.pic_url
    if not url:
        raise ProtocolError(f"item {item_id!r} has no picture to search with")
    result: ImageSearchResult = yield image_search(absolute_url(url, scheme), options)
    return result


def image_query_file(
    image: ImageSource, begin_page: int, page_size: int | None, with_score: bool | None
) -> Flow[OfferPage]:
    """Upload the picture through the 1688 upload route, then a 1688 search by its imageId."""
    uploaded: Upload = yield upload(image, UPLOAD_1688)
    result: OfferPage = yield image_query(uploaded.image_id, None, begin_page, page_size, with_score)
    return result

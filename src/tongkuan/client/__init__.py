"""A Python client of tongkuan's DAJI-style HTTP API, blocking (`Client`) or asyncio
(`AsyncClient`).

It imports nothing of the server (only httpx, pydantic and the standard library), so it
works installed alone, and since tongkuan speaks DAJI's wire format it works against DAJI's
own service too: pass `DAJI_BASE_URL` (or any other service's address) as `base_url`, which
is the only thing that changes.

    from tongkuan.client import Client, Filter

    with Client("http://127.0.0.1:8000", "my-app", "my-secret") as client:
        found = client.search_file("shoe.jpg", page_size=5, filter=Filter(max_price=200))
        for item in found.items:
            print(item.item_id, item.title, item.zk_final_price)
"""

from tongkuan.client.clients import DAJI_BASE_URL, AsyncClient, Client
from tongkuan.client.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ClientError,
    ProtocolError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)
from tongkuan.client.models import (
    CategoryScore,
    ImageSearchResult,
    Item,
    ItemDetails,
    KeywordPage,
    Offer,
    OfferPage,
    Picture,
    PriceInfo,
    Shop,
    ShopPage,
    Upload,
    absolute_url,
)
from tongkuan.client.retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy
from tongkuan.client.signing import Credentials, sign
from tongkuan.client.values import Category, Filter, ImageSearchOptions, Region, SortOrder

__all__ = [
    "DAJI_BASE_URL",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Category",
    "CategoryScore",
    "Client",
    "ClientError",
    "Credentials",
    "Filter",
    "ImageSearchOptions",
    "ImageSearchResult",
    "Item",
    "ItemDetails",
    "KeywordPage",
    "Offer",
    "OfferPage",
    "Picture",
    "PriceInfo",
    "ProtocolError",
    "RateLimitError",
    "Region",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "Shop",
    "ShopPage",
    "SortOrder",
    "Upload",
    "absolute_url",
    "sign",
]

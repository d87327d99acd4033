"""What the routes answer, as typed models read from the envelope's `data`.

Field names are the wire names in snake_case (`zkFinalPrice` is `zk_final_price`), except
that each page's list is `items`, `shops` or `offers` rather than `data`. Prices are
Decimals. Models ignore fields they do not know, and fields DAJI may leave out have
defaults, so one model reads this service and DAJI's alike.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator
from pydantic.alias_generators import to_camel

from tongkuan.client.values import Region


def _blank_to_none(value: Any) -> Any:
    return None if value == "" else value


def _none_to_blank(value: Any) -> Any:
    return "" if value is None else value


def _region(value: Any) -> Any:
    return Region.parse(value) if isinstance(value, str) else value


Price = Annotated[Decimal | None, BeforeValidator(_blank_to_none)]
"""A price as DAJI spells it ("22.8"); None when absent or blank."""
Text = Annotated[str, BeforeValidator(_none_to_blank)]
"""A text field that an answer may leave null."""
WireRegion = Annotated[Region, BeforeValidator(_region)]


class WireModel(BaseModel):
    """Read from camelCase wire names; frozen, and lenient about fields it does not know."""

    model_config = ConfigDict(frozen=True, alias_generator=to_camel, extra="ignore", coerce_numbers_to_str=True)


def absolute_url(url: str, scheme: str = "https") -> str:
    """A protocol-relative URL (`//host/path`, as upstream spells picture URLs) with a scheme."""
    return f"{scheme}:{url}" if url.startswith("//") else url


SCHEME = "scheme"
"""The validation context's key for the scheme of the service an answer came from."""


class PictureModel(WireModel):
    """A model with a picture URL, which may come without a scheme (`//host/path`):
    `picture_url()` completes it with the scheme of the service the answer came from (the
    clients pass it in the validation context), or https where none was given."""

    _scheme: str = PrivateAttr(default="https")
    if TYPE_CHECKING:  # each subclass declares it where its fields put it
        pic_url: str

    @model_validator(mode="after")
    def _remember_scheme(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, dict) and info.context.get(SCHEME):
            self._scheme = str(info.context[SCHEME])
        return self

    def picture_url(self, scheme: str | None = None) -> str:
        """`pic_url` with a scheme, ready to fetch or to search with: `scheme` if given, else
        that of the service the answer came from."""
        return absolute_url(self.pic_url, scheme or self._scheme)


class Item(PictureModel):
    """A product in DAJI's 15-field item shape; `score` only when asked for (`with_score`)."""

    item_id: str
    title: Text = ""
    pic_url: Text = ""
    url: Text = ""
    reserve_price: Price = None
    zk_final_price: Price = None
    category_name: Text = ""
    level_one_category_name: Text = ""
    coupon_amount: int | None = None
    coupon_start_fee: str | None = Field(default=None, alias="couponstartFee")
    provcity: Text = ""
    seller_id: Text = ""
    shop_title: Text = ""
    user_type: int = 0
    volume: int = 0
    score: float | None = None


class CategoryScore(WireModel):
    """A predicted category and its probability."""

    category_id: int
    score: float


class MainRegion(WireModel):
    """The region searched and the categories predicted for it, best first."""

    multi_category_id: list[CategoryScore] = Field(default_factory=list)
    region: WireRegion | None = None


class SubjectRegion(WireModel):
    region: WireRegion


class PicInfo(WireModel):
    """What the service saw in the query picture."""

    main_region: MainRegion = Field(default_factory=MainRegion)
    multi_region: list[SubjectRegion] = Field(default_factory=list)


class ImageSearchResult(WireModel):
    """An image search's answer: one page of items and what was detected in the picture."""

    items: list[Item] = Field(alias="data")
    pic_info: PicInfo = Field(default_factory=PicInfo)
    page_no: int = 0
    page_size: int = 0

    @property
    def categories(self) -> list[CategoryScore]:
        """The predicted categories, best first."""
        return self.pic_info.main_region.multi_category_id

    @property
    def main_region(self) -> Region | None:
        """The region searched: the given `region`, the main subject, or the whole picture."""
        return self.pic_info.main_region.region

    @property
    def regions(self) -> list[Region]:
        """Every subject found, the main one first."""
        return [subject.region for subject in self.pic_info.multi_region]

    @property
    def next_page_no(self) -> int:
        """The `page_no` of the next page: `page_no` is an offset, so it moves by the items returned."""
        return self.page_no + len(self.items)


class Upload(WireModel):
    """A kept upload: its `image_id`, and (this service) the `pic_url` it is served under."""

    image_id: str
    pic_url: str | None = None


class KeywordPage(WireModel):
    """A page of a keyword search; `page_no` counts from 1, `total` every match."""

    items: list[Item] = Field(alias="data")
    page_no: int = 1
    page_size: int = 0
    total: int | None = None


class Shop(WireModel):
    """A shop with its best-selling items."""

    shop_title: Text = ""
    seller_id: Text = ""
    provcity: Text = ""
    user_type: int = 0
    item_count: int = 0
    volume: int = 0
    items: list[Item] = Field(default_factory=list)


class ShopPage(WireModel):
    """A page of a shop search; `total` counts the shops."""

    shops: list[Shop] = Field(alias="data")
    page_no: int = 1
    page_size: int = 0
    total: int | None = None


class Picture(PictureModel):
    """One of a product's pictures."""

    pic_name: Text = ""
    pic_url: str


class ItemDetails(Item):
    """A product's full record: the item fields, its category and every picture."""

    category_id: int | None = None
    category_predicted: bool | None = None
    pictures: list[Picture] = Field(default_factory=list)
    custom_content: Any = None


class PriceInfo(WireModel):
    price: Price = None
    consign_price: Price = None


class Offer(WireModel):
    """A 1688 image-search result."""

    offer_id: str
    subject: Text = ""
    subject_trans: Text = ""
    image_url: Text = ""
    price_info: PriceInfo = Field(default_factory=PriceInfo)
    month_sold: int | None = None
    company_name: Text = ""
    seller_id: Text = ""
    provcity: Text = ""
    detail_url: Text = ""
    score: float | None = None


class OfferPage(WireModel):
    """A page of a 1688 image search, with the totals; `current_page` counts from 1."""

    offers: list[Offer] = Field(alias="data")
    total_records: int = 0
    total_page: int = 0
    page_size: int = 0
    current_page: int = 1

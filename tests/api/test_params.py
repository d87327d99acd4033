"""The parameter parsers of `tongkuan.api.params`, called as plain functions: the values
each accepts, the default it falls back on, and each refusal, whose message names the
parameter and the rule it breaks."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from tongkuan.api import params as rules
from tongkuan.domain.boxes import Box
from tongkuan.domain.categories import Category
from tongkuan.domain.products import ProductFilter, SortOrder
from tongkuan.errors import ParameterError


def refusal(parse: Callable[..., object], *args: object) -> str:
    """The message of the `ParameterError` that calling `parse(*args)` raises."""
    with pytest.raises(ParameterError) as caught:
        parse(*args)
    return str(caught.value)


# single_values


def test_single_values_keeps_each_pair_given_once() -> None:
    assert rules.single_values([("a", "1"), ("b", "")]) == {"a": "1", "b": ""}


def test_a_parameter_given_twice_is_refused_rather_than_guessed() -> None:
    assert (
        refusal(rules.single_values, [("pageNo", "1"), ("pageNo", "2")]) == "pageNo is given more than once (参数重复)"
    )


def test_a_value_over_the_length_limit_is_refused() -> None:
    message = refusal(rules.single_values, [("picUrl", "x" * (rules.MAX_PARAM_LENGTH + 1))])
    assert message.startswith(f"picUrl is longer than {rules.MAX_PARAM_LENGTH} characters")


def test_image_base64_may_be_longer_than_other_values() -> None:
    long = "A" * (rules.MAX_PARAM_LENGTH + 1)
    assert rules.single_values([("image_base64", long)]) == {"image_base64": long}


def test_a_nul_character_in_a_name_or_a_value_is_refused() -> None:
    assert "must not contain NUL characters" in refusal(rules.single_values, [("keyword", "a\x00b")])
    assert "'ke\\x00y'" in refusal(rules.single_values, [("ke\x00y", "a")])


# int_in_range


def test_an_integer_in_range_is_read_with_surrounding_spaces() -> None:
    assert rules.int_in_range({"pageNo": " 7 "}, "pageNo", 0, 0, 499) == 7
    assert rules.int_in_range({"n": "-3"}, "n", 0, -5, 5) == -3


def test_an_absent_or_empty_integer_takes_its_default() -> None:
    assert rules.int_in_range({}, "pageSize", 10, 1, 20) == 10
    assert rules.int_in_range({"pageSize": ""}, "pageSize", 10, 1, 20) == 10


def test_an_integer_outside_its_range_is_refused_naming_the_range() -> None:
    message = refusal(rules.int_in_range, {"pageSize": "21"}, "pageSize", 10, 1, 20)
    assert message == "pageSize must be an integer from 1 to 20, not 21 (pageSize 必须是 1–20 的整数)"


@pytest.mark.parametrize("raw", ["ten", "1.5", "²", "٣", "1234567890", " "])
def test_text_that_is_not_an_ascii_integer_is_refused(raw: str) -> None:
    message = refusal(rules.int_in_range, {"pageNo": raw}, "pageNo", 0, 0, 499)
    assert message.startswith(f"pageNo must be an integer from 0 to 499, not {raw!r}")


# boolean


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("TRUE", True), ("1", True), ("false", False), (" 0 ", False)]
)
def test_true_false_one_and_zero_are_booleans(raw: str, value: bool) -> None:
    assert rules.boolean({"crop": raw}, "crop", not value) is value


def test_an_absent_or_empty_boolean_takes_its_default() -> None:
    assert rules.boolean({}, "crop", True) is True
    assert rules.boolean({"withScore": ""}, "withScore", False) is False


def test_other_words_are_not_booleans() -> None:
    assert (
        refusal(rules.boolean, {"crop": "yes"}, "crop", True)
        == "crop must be true or false, not 'yes' (crop 必须是 true 或 false)"
    )


# category


def test_a_category_code_is_read_as_its_category() -> None:
    assert rules.category({"categoryId": " 20 "}) is Category.TOYS
    assert rules.category({"categoryId": "88888888"}) is Category.OTHER


def test_an_absent_or_blank_category_is_left_to_prediction() -> None:
    assert rules.category({}) is None
    assert rules.category({"categoryId": "  "}) is None


@pytest.mark.parametrize("raw", ["10", "shoes", "4.0"])
def test_an_unknown_category_is_refused_listing_the_codes(raw: str) -> None:
    message = refusal(rules.category, {"categoryId": raw})
    assert message.startswith("categoryId must be one of 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 22, 88888888")
    assert repr(raw) in message


# region and fit_region


def test_a_region_is_x1_x2_y1_y2() -> None:
    assert rules.region({"region": "10, 200,5,300"}) == Box(10, 200, 5, 300)


def test_an_absent_or_blank_region_means_none() -> None:
    assert rules.region({}) is None
    assert rules.region({"region": " "}) is None


@pytest.mark.parametrize("raw", ["1,2,3", "1,2,3,4,5", "a,2,3,4", "-1,2,3,4", "5,5,0,10", "0,10,9,3"])
def test_a_region_that_is_not_four_ordered_non_negative_integers_is_refused(raw: str) -> None:
    message = refusal(rules.region, {"region": raw})
    assert message.startswith("region must be x1,x2,y1,y2: four non-negative integers with x1 < x2 and y1 < y2")


def test_a_region_is_clipped_to_the_image() -> None:
    assert rules.fit_region(Box(10, 500, 20, 900), 300, 400) == Box(10, 300, 20, 400)


def test_a_region_leaving_less_than_8x8_pixels_inside_the_image_is_refused() -> None:
    message = refusal(rules.fit_region, Box(295, 400, 0, 100), 300, 400)
    assert message == "region 295,400,0,100 leaves less than 8x8 pixels inside the 300x400 image (region 超出图片范围)"


# http_url, required, optional, required_int, required_url


def test_an_http_or_https_url_is_accepted_in_any_case() -> None:
    assert rules.http_url("HTTPS://example.com/a.jpg", "picUrl") == "HTTPS://example.com/a.jpg"


@pytest.mark.parametrize("value", ["ftp://example.com/a.jpg", "/images/a.jpg", None, 42])
def test_anything_but_an_http_url_is_refused(value: object) -> None:
    assert refusal(rules.http_url, value, "url") == "url must be an http or https URL (url 必须是 http/https 地址)"


def test_a_required_value_is_read_without_surrounding_spaces() -> None:
    assert rules.required({"keyword": " 牛奶 "}, "keyword") == "牛奶"


@pytest.mark.parametrize("params", [{}, {"keyword": ""}, {"keyword": "   "}])
def test_a_missing_or_blank_required_value_is_refused(params: dict[str, str]) -> None:
    assert refusal(rules.required, params, "keyword") == "keyword is required (keyword 不能为空)"


def test_an_optional_value_is_kept_as_sent_and_empty_means_none() -> None:
    assert rules.optional({"image_id": " ab "}, "image_id") == " ab "
    assert rules.optional({"image_id": ""}, "image_id") is None
    assert rules.optional({}, "image_id") is None


def test_a_required_integer_is_read_within_its_range() -> None:
    assert rules.required_int({"beginPage": "3"}, "beginPage", 1, 2000) == 3


def test_a_missing_required_integer_is_refused_naming_where_it_starts() -> None:
    assert refusal(rules.required_int, {}, "beginPage", 1, 2000) == "beginPage is required, from 1 (beginPage 不能为空)"
    assert refusal(rules.required_int, {"beginPage": ""}, "beginPage", 1, 2000).startswith("beginPage is required")


def test_a_required_integer_outside_its_range_is_refused() -> None:
    message = refusal(rules.required_int, {"beginPage": "0"}, "beginPage", 1, 2000)
    assert message.startswith("beginPage must be an integer from 1 to 2000, not 0")


def test_a_required_url_is_read_without_surrounding_spaces() -> None:
    assert rules.required_url({"pic_url": " http://a/b.jpg "}, "pic_url") == "http://a/b.jpg"


def test_a_required_url_must_be_given_and_be_http() -> None:
    assert refusal(rules.required_url, {}, "pic_url") == "pic_url is required (pic_url 不能为空)"
    assert refusal(rules.required_url, {"pic_url": "file:///etc/passwd"}, "pic_url").startswith(
        "pic_url must be an http or https URL"
    )


# score


def test_a_score_is_a_number_from_0_to_1() -> None:
    assert rules.score({"scoreThreshold": " 0.25 "}, "scoreThreshold") == 0.25
    assert rules.score({"scoreThreshold": "1"}, "scoreThreshold") == 1.0


def test_an_absent_or_blank_score_means_no_threshold() -> None:
    assert rules.score({}, "scoreThreshold") is None
    assert rules.score({"scoreThreshold": " "}, "scoreThreshold") is None


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "nan", "half"])
def test_a_score_outside_0_to_1_or_not_a_number_is_refused(raw: str) -> None:
    message = refusal(rules.score, {"scoreThreshold": raw}, "scoreThreshold")
    assert message == f"scoreThreshold must be a number from 0 to 1, not {raw!r} (scoreThreshold 必须是 0–1 之间的数)"


# sort_order


def test_a_sort_order_is_read_by_its_wire_value() -> None:
    assert rules.sort_order({"sort": "price_asc"}) is SortOrder.PRICE_ASC


def test_an_absent_or_blank_sort_order_means_relevance() -> None:
    assert rules.sort_order({}) is SortOrder.RELEVANCE
    assert rules.sort_order({"sort": " "}) is SortOrder.RELEVANCE


def test_an_unknown_sort_order_is_refused_listing_the_orders() -> None:
    message = refusal(rules.sort_order, {"sort": "newest"})
    assert message == (
        "sort must be one of default, price_asc, price_desc, sales_desc, not 'newest' (sort 排序方式无效)"
    )


# product_filter


def test_a_filter_reads_every_key_in_any_order() -> None:
    parsed = rules.product_filter({"filter": "location:上海; userType:1;price:10-99.5;shop:Some Shop"})
    assert parsed == ProductFilter(
        min_price=Decimal("10"), max_price=Decimal("99.5"), user_type=1, shop_title="Some Shop", location="上海"
    )


def test_a_price_range_may_leave_either_end_open() -> None:
    assert rules.product_filter({"filter": "price:10-"}) == ProductFilter(min_price=Decimal("10"))
    assert rules.product_filter({"filter": "price:-100"}) == ProductFilter(max_price=Decimal("100"))


def test_an_absent_or_blank_filter_means_no_condition_and_empty_parts_are_skipped() -> None:
    assert rules.product_filter({}) == ProductFilter()
    assert rules.product_filter({"filter": "  "}) == ProductFilter()
    assert rules.product_filter({"filter": ";userType:0;"}) == ProductFilter(user_type=0)


@pytest.mark.parametrize("part", ["colour:red", "price", "shop:", "userType 1"])
def test_a_filter_part_that_is_not_a_known_key_with_a_value_is_refused(part: str) -> None:
    message = refusal(rules.product_filter, {"filter": part})
    assert message == (
        "filter must be key:value pairs joined by ';' with keys price, userType, shop, location "
        f"(filter 格式无效); not {part!r}"
    )


def test_a_filter_key_given_twice_is_refused() -> None:
    assert (
        refusal(rules.product_filter, {"filter": "shop:a;shop:b"})
        == "filter gives shop more than once (filter 条件重复)"
    )


def test_a_user_type_other_than_0_or_1_is_refused() -> None:
    message = refusal(rules.product_filter, {"filter": "userType:2"})
    assert message == "filter userType must be 0 (Taobao) or 1 (Tmall) (filter userType 只能是 0 或 1)"


@pytest.mark.parametrize("price", ["10", "-", "a-b", "-5-10", "20-10", "inf-", "NaN-1"])
def test_a_price_range_that_is_not_low_dash_high_with_non_negative_prices_is_refused(price: str) -> None:
    message = refusal(rules.product_filter, {"filter": f"price:{price}"})
    assert message == (
        f"filter price must be LOW-HIGH with non-negative prices, LOW <= HIGH, not {price!r} (filter 价格区间无效)"
    )


# words


def test_words_are_read_without_surrounding_spaces() -> None:
    assert rules.words({"keyword": "  钢笔 red  "}, "keyword") == "钢笔 red"
    assert rules.words({"keyword": " " + "x" * rules.MAX_KEYWORD_LENGTH + " "}, "keyword") == "x" * 200


def test_words_are_required() -> None:
    assert refusal(rules.words, {"keyword": "  "}, "keyword") == "keyword is required (keyword 不能为空)"


def test_words_over_the_length_limit_are_refused_naming_it() -> None:
    message = refusal(rules.words, {"keyword": "x" * (rules.MAX_KEYWORD_LENGTH + 1)}, "keyword")
    assert message == "keyword must be at most 200 characters, not 201 (keyword 不能超过 200 个字符)"

"""Parameter tables (`tongkuan.api.declare`): one declaration gives a route's OpenAPI docs
and its typed parsing, rows are checked in table order, and a table that does not fill its
value object is refused when it is built. Also that every route's table documents what
it parses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pytest

from tongkuan.api import alibaba, taobao, web
from tongkuan.api import params as rules
from tongkuan.api.declare import Param, ParamTable, accepted
from tongkuan.errors import ParameterError


@dataclass(frozen=True)
class Page:
    number: int
    word: str


PAGE = ParamTable(
    Page,
    Param("pageNo", "number", partial(rules.int_in_range, default=1, low=1, high=9), "Page, 1-9."),
    Param("q", "word", rules.required, "What to look for."),
    accepted("language", "Accepted, not read."),
)


def test_a_table_parses_the_parameters_into_its_value_object() -> None:
    assert PAGE.parse({"pageNo": "3", "q": " milk ", "language": "en"}) == Page(3, "milk")


def test_the_first_broken_rule_in_table_order_is_the_one_reported() -> None:
    with pytest.raises(ParameterError, match="^pageNo must be"):
        PAGE.parse({"pageNo": "10"})


def test_a_table_documents_every_row_as_an_optional_query_parameter() -> None:
    docs = PAGE.openapi()["parameters"]
    assert [(d["name"], d["description"], d["in"], d["required"]) for d in docs] == [
        ("pageNo", "Page, 1-9.", "query", False),
        ("q", "What to look for.", "query", False),
        ("language", "Accepted, not read.", "query", False),
    ]


def test_a_form_body_lists_the_leading_rows_first() -> None:
    body = PAGE.form_body(accepted("appKey", "Your key."))
    properties = body["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert list(properties) == ["appKey", "pageNo", "q", "language"]
    assert properties["appKey"] == {"type": "string", "description": "Your key."}


def test_a_table_that_leaves_a_field_unfilled_is_refused_when_built() -> None:
    with pytest.raises(TypeError, match="word"):
        ParamTable(Page, Param("pageNo", "number", rules.optional, "Page."))


def test_a_row_that_names_a_field_without_a_parser_is_refused_when_built() -> None:
    with pytest.raises(TypeError):
        ParamTable(Page, Param("pageNo", "number", rules.optional, "Page."), Param("q", "word", None, "Word."))


@pytest.mark.parametrize(
    "table",
    [
        taobao.V2,
        taobao.V1,
        taobao.UPLOAD,
        taobao.UPLOAD_FIELDS,
        taobao.KEYWORD,
        taobao.SHOP,
        taobao.DETAILS,
        alibaba.OFFERS,
        web.PAGE_SEARCH,
    ],
)
def test_every_route_table_describes_each_of_its_parameters(table: ParamTable[object]) -> None:
    names = [row.name for row in table.rows]
    assert len(names) == len(set(names))
    assert all(row.description for row in table.rows)

"""Request parameters declared once: a table of rows (name, field, parser, description) gives
a route both its OpenAPI parameter docs and the typed value its handler reads.

A route's parameters are not FastAPI arguments. DAJI clients send every value as text, and
a broken one must be answered in the envelope with a message that names the parameter and
its rule, so each row names a parser from `tongkuan.api.params`:

    PAGE = ParamTable(
        Page,
        Param("pageNo", "page_no", partial(rules.int_in_range, default=0, low=0, high=499), "Start index."),
        accepted("language", "Accepted for compatibility."),
    )

    @router.get("/page", openapi_extra=PAGE.openapi())
    def page(params: SignedParams) -> ...:
        wanted = PAGE.parse(params)  # a Page, or a ParameterError naming the first broken rule

Rows are parsed in table order, so that order also decides which broken rule a request with
several hears about first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

Parser = Callable[[dict[str, str], str], Any]
"""Reads one parameter from a request's single-valued parameters, given its name."""

V = TypeVar("V")


@dataclass(frozen=True)
class Param:
    """One parameter: its name in the request, the value object's field it fills (None:
    accepted, documented and never read), how it is parsed, and what the docs say."""

    name: str
    field: str | None
    parse: Parser | None
    description: str

    def query_doc(self) -> dict[str, Any]:
        """The OpenAPI description of this parameter in the query string. Always optional:
        a missing required value is answered in the envelope, not by the framework."""
        return {
            "name": self.name,
            "in": "query",
            "required": False,
            "description": self.description,
            "schema": {"type": "string"},
        }


def accepted(name: str, description: str) -> Param:
    """A parameter that DAJI clients send and this service allows but does not use."""
    return Param(name, None, None, description)


class ParamTable(Generic[V]):
    """The parameters of one route: `parse` turns them into a `value` object and `openapi`
    (or `form_body`) documents them. The rows must fill exactly the fields of `value`."""

    def __init__(self, value: Callable[..., V], *rows: Param) -> None:
        filled = sorted(row.field for row in rows if row.field is not None)
        wanted = sorted(field.name for field in dataclasses.fields(value))  # type: ignore[arg-type]
        if filled != wanted or any((row.field is None) != (row.parse is None) for row in rows):
            raise TypeError(f"the rows fill {filled}, but {getattr(value, '__name__', value)} has {wanted}")
        self.value = value
        self.rows = rows

    def parse(self, params: dict[str, str]) -> V:
        """The typed value of `params`; raises `ParameterError` for the first row, in table
        order, whose rule a value breaks."""
        return self.value(
            **{row.field: row.parse(params, row.name) for row in self.rows if row.field and row.parse is not None}
        )

    def openapi(self) -> dict[str, Any]:
        """`openapi_extra` for the route: the rows as query parameters, with their descriptions."""
        return {"parameters": [row.query_doc() for row in self.rows]}

    def form_body(self, *before: Param) -> dict[str, Any]:
        """`openapi_extra` for a route that takes the rows (after `before`) as form fields."""
        properties = {row.name: {"type": "string", "description": row.description} for row in (*before, *self.rows)}
        schema = {"type": "object", "properties": properties}
        return {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": schema}}}}

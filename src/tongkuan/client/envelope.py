"""Reading an answer: the envelope's `data` on success, the typed error otherwise. Both
clients read every answer here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from tongkuan.client.errors import ProtocolError, error_for
from tongkuan.client.retry import retry_after

T = TypeVar("T")

SUCCESS = 200


def read(response: httpx.Response, parse: Callable[[Any], T]) -> T:
    """`parse` applied to the envelope's `data`.

    Raises the `ApiError` for an error envelope (the envelope's code decides, since DAJI
    clients check it rather than the HTTP status), an `ApiError` named by the HTTP status for
    a failed answer that is not an envelope (a proxy's 503 page), and `ProtocolError` for
    anything else that is not the envelope or whose data `parse` refuses.
    """
    status = response.status_code
    body = _json(response)
    code = _code(body) if isinstance(body, dict) else None
    if not isinstance(body, dict) or code is None:
        if status >= 400:
            raise error_for(status, _excerpt(response), status_code=status, **_context(response))
        raise ProtocolError(f"the answer is not the DAJI envelope ({_excerpt(response)})")
    if code != SUCCESS:
        trace = body.get("traceId")
        raise error_for(
            code,
            str(body.get("message") or ""),
            status_code=status,
            trace_id=None if trace is None else str(trace),
            **_context(response),
        )
    try:
        return parse(body.get("data"))
    except ValueError as exc:  # pydantic's ValidationError is one
        raise ProtocolError(f"the answer's data is not the shape this route returns: {exc}") from exc


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return None


def _code(body: dict[str, Any]) -> int | None:
    code = body.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str) and code.isascii() and code.isdigit():
        return int(code)
    return None


def _context(response: httpx.Response) -> dict[str, Any]:
    return {"retry_after": retry_after(response.headers), "response": response}


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {text[:200]}" if text else f"HTTP {response.status_code}"

"""The DAJI response envelope and the one place that maps errors to codes.

Every response, success or error, is `{code, message, data, timestamp, traceId}`; the
HTTP status mirrors the class of `code`. Errors answer `data: null`, except on the search
page's routes (`/web/api/...`), where `data` is `{"error": kind}`: several kinds share a
code, and the page words each kind for the shopper in their language instead of showing
the message, which is written for developers.

A 5xx answer says only what kind of outage it is ("the vector index is unavailable"); the
detail (a server's address, its own error) goes to the log with the answer's traceId, so an
operator finds it from what a client reports.
"""

from __future__ import annotations

import logging
import time
import uuid
from enum import StrEnum
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongkuan.errors import (
    AuthError,
    CatalogConflict,
    ForbiddenAddress,
    ImageError,
    ImageFetchError,
    ImageNotFound,
    ImageTooLarge,
    IngestError,
    InvalidImage,
    InvalidValue,
    JobNotFound,
    ParameterError,
    PictureNotFound,
    ProductNotFound,
    RateLimited,
    ServiceBusy,
    StoreUnavailable,
    TongkuanError,
)

logger = logging.getLogger(__name__)

SUCCESS = "操作成功"


class ErrorKind(StrEnum):
    """What went wrong, finer than the envelope code; sent on the search page's routes."""

    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    BAD_PARAMETER = "bad_parameter"
    FORBIDDEN_ADDRESS = "forbidden_address"
    IMAGE_TOO_LARGE = "image_too_large"
    FETCH_FAILED = "fetch_failed"
    IMAGE_NOT_FOUND = "image_not_found"
    INVALID_IMAGE = "invalid_image"
    IMAGE_ERROR = "image_error"
    PRODUCT_NOT_FOUND = "product_not_found"
    UNAVAILABLE = "unavailable"
    PICTURE_NOT_FOUND = "picture_not_found"
    JOB_NOT_FOUND = "job_not_found"
    IMPORT_FAILED = "import_failed"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TOO_LARGE = "body_too_large"
    SERVER_ERROR = "server_error"
    BUSY = "busy"


# (exception class, envelope code, Chinese summary, kind); the first match wins.
ERROR_CODES: tuple[tuple[type[Exception], int, str, ErrorKind], ...] = (
    (AuthError, 401, "认证失败", ErrorKind.UNAUTHORIZED),
    (RateLimited, 429, "请求过于频繁", ErrorKind.RATE_LIMITED),
    (ParameterError, 400, "参数错误", ErrorKind.BAD_PARAMETER),
    (ServiceBusy, 503, "服务繁忙", ErrorKind.BUSY),  # before the image errors: `LookupsBusy` is both
    (ForbiddenAddress, 400, "图片地址不允许访问", ErrorKind.FORBIDDEN_ADDRESS),
    (ImageTooLarge, 400, "图片过大", ErrorKind.IMAGE_TOO_LARGE),
    (ImageFetchError, 400, "图片下载失败", ErrorKind.FETCH_FAILED),
    (ImageNotFound, 400, "图片不存在", ErrorKind.IMAGE_NOT_FOUND),
    (InvalidImage, 400, "图片无法识别", ErrorKind.INVALID_IMAGE),
    (ImageError, 400, "图片错误", ErrorKind.IMAGE_ERROR),
    (ProductNotFound, 400, "商品不存在", ErrorKind.PRODUCT_NOT_FOUND),
    (InvalidValue, 400, "参数错误", ErrorKind.BAD_PARAMETER),
    (StoreUnavailable, 503, "服务暂不可用", ErrorKind.UNAVAILABLE),
    (PictureNotFound, 400, "图片不存在", ErrorKind.PICTURE_NOT_FOUND),
    (JobNotFound, 400, "任务不存在", ErrorKind.JOB_NOT_FOUND),
    (IngestError, 400, "导入失败", ErrorKind.IMPORT_FAILED),
    (CatalogConflict, 409, "操作冲突", ErrorKind.CONFLICT),
)
# Errors the framework raises before or instead of a route, by HTTP status.
_HTTP_KINDS = {404: ErrorKind.NOT_FOUND, 405: ErrorKind.METHOD_NOT_ALLOWED, 413: ErrorKind.BODY_TOO_LARGE}
_PAGE_ROUTES = "/web/api/"
# The admin API is REST-shaped: what it cannot find is a 404 there (DAJI routes keep 400).
_ADMIN_NOT_FOUND = (ProductNotFound, PictureNotFound, JobNotFound)


def trace_id() -> str:
    return uuid.uuid4().hex[:12]


def envelope(code: int, message: str, data: Any = None, trace: str | None = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "data": data,
        "timestamp": int(time.time() * 1000),
        "traceId": trace or trace_id(),
    }


class Envelope(JSONResponse):
    """An answer in the envelope, written by orjson: a route that returns one skips FastAPI's
    validation and re-encoding of a returned dict (about 0.5 ms for a page of 20 results,
    against 5 µs for orjson's writing). The few values orjson does not know go through
    FastAPI's encoder, as they did before."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=jsonable_encoder, option=orjson.OPT_NON_STR_KEYS)


def ok(data: Any) -> Envelope:
    return Envelope(envelope(200, SUCCESS, data))


def error_response(
    code: int, message: str, data: Any = None, retry_after: int = 1, trace: str | None = None
) -> Envelope:
    """The envelope of an error; a 429 or 503 says in `Retry-After` how many seconds to wait (a
    rate limit refills within a second; a throttled client waits longer), so clients back
    off without guessing."""
    status = code if code in (400, 401, 403, 404, 405, 409, 413, 429, 500, 503) else 400
    headers = {"Retry-After": str(max(1, retry_after))} if status in (429, 503) else None
    return Envelope(envelope(code, message, data, trace), status_code=status, headers=headers)


def error_data(path: str, kind: ErrorKind) -> dict[str, str] | None:
    """An error answer's `data`: its kind on the search page's routes, null on DAJI's."""
    return {"error": kind.value} if path.startswith(_PAGE_ROUTES) else None


def classify(exc: Exception) -> tuple[int, str, ErrorKind]:
    """The envelope code, bilingual message and kind of a domain error."""
    for cls, code, summary, kind in ERROR_CODES:
        if isinstance(exc, cls):
            detail = exc.public_message if isinstance(exc, StoreUnavailable) else str(exc)
            return code, f"{summary}: {detail}", kind
    return 500, "服务器错误: internal server error", ErrorKind.SERVER_ERROR


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the envelope, never in the framework's own shape."""

    @app.exception_handler(TongkuanError)
    async def _domain(request: Request, exc: TongkuanError) -> Envelope:
        code, message, kind = classify(exc)
        if isinstance(exc, _ADMIN_NOT_FOUND) and request.url.path.startswith("/admin/"):
            code = 404
        trace = trace_id()
        if isinstance(exc, StoreUnavailable):  # expected in an outage: one line, no traceback
            cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ is not None else ""
            logger.warning("%s on %s [traceId %s]: %s%s", exc.public_message, request.url.path, trace, exc, cause)
        elif isinstance(exc, ServiceBusy):  # an ordinary overload: one line, no traceback
            logger.warning("busy on %s [traceId %s]: %s", request.url.path, trace, exc)
        elif code >= 500:
            logger.exception("unmapped error on %s [traceId %s]", request.url.path, trace, exc_info=exc)
        retry_after = exc.retry_after if isinstance(exc, RateLimited) else 1
        return error_response(code, message, error_data(request.url.path, kind), retry_after, trace)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Envelope:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        message = f"参数错误: {where}: {first.get('msg', 'invalid')}"
        return error_response(400, message, error_data(request.url.path, ErrorKind.BAD_PARAMETER))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Envelope:
        messages = {404: "接口不存在: no such endpoint", 405: "方法不允许: method not allowed"}
        kind = _HTTP_KINDS.get(exc.status_code, ErrorKind.BAD_PARAMETER)
        message = messages.get(exc.status_code, str(exc.detail))
        return error_response(exc.status_code, message, error_data(request.url.path, kind))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Envelope:
        trace = trace_id()
        logger.exception("unexpected error on %s [traceId %s]", request.url.path, trace, exc_info=exc)
        message = "服务器错误: internal server error"
        return error_response(500, message, error_data(request.url.path, ErrorKind.SERVER_ERROR), trace=trace)

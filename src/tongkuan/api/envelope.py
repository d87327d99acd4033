"""The DAJI response envelope and the one place that maps errors to codes.

Every response, success or error, is `{code, message, data, timestamp, traceId}`; the
HTTP status mirrors the class of `code`.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tongkuan.api.auth import AuthError, ParameterError, RateLimited
from tongkuan.errors import (
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
    PictureNotFound,
    ProductNotFound,
    StoreUnavailable,
    TongkuanError,
)

logger = logging.getLogger(__name__)

SUCCESS = "操作成功"

# (exception class, envelope code, Chinese summary); the first match wins.
ERROR_CODES: tuple[tuple[type[Exception], int, str], ...] = (
    (AuthError, 401, "认证失败"),
    (RateLimited, 429, "请求过于频繁"),
    (ParameterError, 400, "参数错误"),
    (ForbiddenAddress, 400, "图片地址不允许访问"),
    (ImageTooLarge, 400, "图片过大"),
    (ImageFetchError, 400, "图片下载失败"),
    (ImageNotFound, 400, "图片不存在"),
    (InvalidImage, 400, "图片无法识别"),
    (ImageError, 400, "图片错误"),
    (ProductNotFound, 400, "商品不存在"),
    (InvalidValue, 400, "参数错误"),
    (StoreUnavailable, 503, "服务暂不可用"),
    (PictureNotFound, 400, "图片不存在"),
    (JobNotFound, 400, "任务不存在"),
    (IngestError, 400, "导入失败"),
    (CatalogConflict, 409, "操作冲突"),
)
# The admin API is REST-shaped: what it cannot find is a 404 there (DAJI routes keep 400).
_ADMIN_NOT_FOUND = (ProductNotFound, PictureNotFound, JobNotFound)


def trace_id() -> str:
    return uuid.uuid4().hex[:12]


def envelope(code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "data": data,
        "timestamp": int(time.time() * 1000),
        "traceId": trace_id(),
    }


def ok(data: Any) -> dict[str, Any]:
    return envelope(200, SUCCESS, data)


def error_response(code: int, message: str) -> JSONResponse:
    status = code if code in (400, 401, 403, 404, 405, 409, 413, 429, 500, 503) else 400
    return JSONResponse(envelope(code, message), status_code=status)


def classify(exc: Exception) -> tuple[int, str]:
    """The envelope code and bilingual message for a domain error."""
    for cls, code, summary in ERROR_CODES:
        if isinstance(exc, cls):
            return code, f"{summary}: {exc}"
    return 500, "服务器错误: internal server error"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the envelope, never in the framework's own shape."""

    @app.exception_handler(TongkuanError)
    async def _domain(request: Request, exc: TongkuanError) -> JSONResponse:
        code, message = classify(exc)
        if isinstance(exc, _ADMIN_NOT_FOUND) and request.url.path.startswith("/admin/"):
            code = 404
        if code == 500:
            logger.exception("unmapped error on %s", request.url.path, exc_info=exc)
        return error_response(code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error_response(400, f"参数错误: {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "接口不存在: no such endpoint", 405: "方法不允许: method not allowed"}
        return error_response(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return error_response(500, "服务器错误: internal server error")

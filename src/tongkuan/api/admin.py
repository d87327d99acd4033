"""The catalog admin API: products and their pictures, bulk imports, export, evaluations
on check sets and the checks the search page saves.

Modelled on Alibaba Cloud Image Search's AddImage / DeleteImage / DumpMeta. It answers in
the same envelope as the DAJI routes but authenticates differently: a bearer token
(`TONGKUAN_ADMIN_TOKEN`) that is never a DAJI appKey, so an application that may search
cannot change the catalog. Every change is committed before the answer and is seen by the
next search, keyword or image, in this process or any other on the same data directory.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from starlette.datastructures import UploadFile

from tongkuan.api import params as rules
from tongkuan.api.deps import AuthThrottleDep, BaseUrl, EngineDep, EvaluationsDep, SettingsDep
from tongkuan.api.envelope import Envelope, ok
from tongkuan.api.request import throttled
from tongkuan.api.wire import deleted, details, evaluation, job, products_data, stored_url
from tongkuan.config import Settings
from tongkuan.engine import Engine
from tongkuan.engine.engine import MAX_PICTURES
from tongkuan.errors import AuthError, BadCredentials, CheckSetError, ImageTooLarge, ParameterError, RecordError
from tongkuan.ingest.ingester import picture_name
from tongkuan.ingest.readers import JsonTooDeep, load_json

MAX_LIST = 1000
_PICTURE_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,128}")


def require_admin(request: Request, settings: SettingsDep, throttle: AuthThrottleDep) -> None:
    """Let a request through only with `Authorization: Bearer <admin token>`."""
    token = settings.access.admin_token
    if not token:
        raise AuthError("the admin API is off on this server (set TONGKUAN_ADMIN_TOKEN)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise AuthError("Authorization: Bearer <admin token> is required")
    with throttled(request, throttle):
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise BadCredentials("the admin token is wrong")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])

_PRODUCT_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "Record fields (title, reservePrice, ...) and images: http(s) URLs "
                    'or {"url", "picName"} objects.',
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "product": {"type": "string", "description": "The record fields as a JSON object."},
                        "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            },
        }
    }
}


async def _json_object(request: Request, what: str) -> dict[str, Any]:
    body = _load_json(await request.body(), "the body")
    if not isinstance(body, dict):
        raise ParameterError(f"the body must be a JSON object ({what})")
    return body


def _load_json(text: str | bytes, what: str) -> Any:
    """Parsed JSON, or None for text that is not JSON; too deep a nesting is refused by name."""
    try:
        return load_json(text)
    except JsonTooDeep as exc:
        raise ParameterError(f"{what} is refused: {exc}") from None
    except ValueError:
        return None


def _picture_name(name: str, what: str) -> str:
    if not _PICTURE_NAME.fullmatch(name):
        raise ParameterError(f"{what} must be 1-128 characters without '/', '\\' or control characters")
    return name


def _default_name(url: str) -> str:
    """A picture's name when none is given: its file name in the URL ("" if it has none usable)."""
    name = picture_name(url)
    return name if _PICTURE_NAME.fullmatch(name) else ""


def _picture_bytes(limit: int, data: bytes, what: str) -> bytes:
    if len(data) > limit:
        raise ImageTooLarge(f"{what} is {len(data)} bytes; the limit is {limit}")
    return data


async def _product_request(
    request: Request, engine: Engine, settings: Settings
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Record fields, image references and picture names from a JSON or multipart body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        limit = settings.fetch.max_bytes
        async with request.form(max_files=MAX_PICTURES, max_part_size=limit) as form:
            raw = form.get("product")
            fields = _load_json(raw, "the form field product") if isinstance(raw, str) else None
            if not isinstance(fields, dict):
                raise ParameterError("the form field product must hold the record fields as a JSON object")
            refs: list[str] = []
            names: list[str] = []
            for upload in form.getlist("images"):
                if not isinstance(upload, UploadFile):
                    raise ParameterError("images must be files")
                data = _picture_bytes(limit, await upload.read(), f"image {upload.filename!r}")
                refs.append(await run_in_threadpool(engine.keep_picture, data))
                names.append(_picture_name(upload.filename or str(len(names)), "an image's file name"))
        return fields, refs, names
    fields = await _json_object(request, "record fields and images")
    images = fields.pop("images", None)
    if not isinstance(images, list):
        raise ParameterError("images must be a list of http(s) URLs or {url, picName} objects")
    refs, names = [], []
    for position, image in enumerate(images):
        if isinstance(image, dict):
            refs.append(rules.http_url(image.get("url"), f"images[{position}].url"))
            given = image.get("picName")
            names.append(
                _picture_name(str(given), f"images[{position}].picName")
                if given
                else _default_name(refs[-1]) or str(position)
            )
        else:
            refs.append(rules.http_url(image, f"images[{position}]"))
            names.append(_default_name(refs[-1]) or str(position))
    return fields, refs, names


def _details(engine: Engine, item_id: str, base: str) -> dict[str, Any]:
    product, pictures = engine.product_details(item_id)
    return details(product, pictures, base)


@router.put("/products/{item_id}", summary="Add or replace a product with its pictures", openapi_extra=_PRODUCT_BODY)
async def put_product(
    item_id: str, request: Request, engine: EngineDep, settings: SettingsDep, base: BaseUrl
) -> Envelope:
    """Store a product and exactly the pictures given (JSON with picture URLs, or multipart
    with picture files); the category is predicted from the pictures when not given."""
    if not item_id.strip() or item_id != item_id.strip():
        raise ParameterError("itemId must not be empty or start or end with spaces")
    fields, refs, names = await _product_request(request, engine, settings)
    if not refs:
        raise ParameterError("images is empty: a product needs at least one picture")
    if len(refs) > MAX_PICTURES:
        raise ParameterError(f"a product has at most {MAX_PICTURES} pictures")
    if "itemId" in fields and str(fields["itemId"]) != item_id:
        raise ParameterError("itemId in the body differs from the one in the path")
    report = await run_in_threadpool(engine.put_product, {**fields, "itemId": item_id}, refs, names)
    if report.failures:
        raise ParameterError(report.failures[0].reason)
    return ok(_details(engine, item_id, base))


@router.patch("/products/{item_id}", summary="Update a product's fields")
async def patch_product(item_id: str, request: Request, engine: EngineDep, base: BaseUrl) -> Envelope:
    """Change some record fields; pictures and vectors stay as they are."""
    changes = await _json_object(request, "the fields to change")
    try:
        await run_in_threadpool(engine.update_product, item_id, changes)
    except RecordError as exc:
        raise ParameterError(str(exc)) from None
    return ok(_details(engine, item_id, base))


@router.get("/products/{item_id}", summary="One product with its pictures")
def get_product(item_id: str, engine: EngineDep, base: BaseUrl) -> Envelope:
    return ok(_details(engine, item_id, base))


@router.delete("/products/{item_id}", summary="Delete a product and its pictures")
def delete_product(item_id: str, engine: EngineDep) -> Envelope:
    engine.delete_product(item_id)
    return ok(deleted(item_id))


@router.get("/products", summary="List products, paged by a cursor")
def list_products(
    engine: EngineDep,
    base: BaseUrl,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page; none for the first.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST, description=f"Products per page, 1-{MAX_LIST}.")] = 100,
) -> Envelope:
    """Products in itemId order; pass `nextCursor` back as `cursor` until it is null."""
    products, next_cursor = engine.products_page(cursor, limit)
    return ok(products_data(products, next_cursor, base))


@router.post("/products/{item_id}/images", summary="Add or replace one picture of a product")
async def add_picture(
    item_id: str, request: Request, engine: EngineDep, settings: SettingsDep, base: BaseUrl
) -> Envelope:
    """Multipart (`image` file, optional `picName`) or JSON (`url`, optional `picName`). A
    picture of the same name is replaced."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        limit = settings.fetch.max_bytes
        async with request.form(max_files=1, max_part_size=limit) as form:
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise ParameterError("image must be a file")
            data = _picture_bytes(limit, await upload.read(), "image")
            given = form.get("picName")
            name = _picture_name(given if isinstance(given, str) and given else upload.filename or "", "picName")
        location = None
    else:
        body = await _json_object(request, "url and picName")
        url = rules.http_url(body.get("url"), "url")
        data = await run_in_threadpool(engine.fetch, url)
        given = body.get("picName")
        name = _picture_name(str(given), "picName") if given else _default_name(url)  # "": the next free name
        location = url
    await run_in_threadpool(engine.add_image, item_id, data, name, location)
    return ok(_details(engine, item_id, base))


@router.delete("/products/{item_id}/images/{pic_name}", summary="Delete one picture of a product")
def delete_picture(item_id: str, pic_name: str, engine: EngineDep, base: BaseUrl) -> Envelope:
    engine.delete_picture(item_id, pic_name)
    return ok(_details(engine, item_id, base))


@router.post(
    "/imports",
    summary="Start a bulk import of a JSONL file",
    openapi_extra={"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}},
)
async def start_import(request: Request, engine: EngineDep) -> Envelope:
    """The body is JSONL in the `tongkuan ingest` record format, with pictures as http(s)
    URLs. Answers at once with a job id; poll the job for progress."""
    path = engine.imports.incoming()
    try:
        size = 0
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
                size += len(chunk)
        if size == 0:
            raise ParameterError("the body is empty: send JSONL records, one per line")
        submitted = await run_in_threadpool(engine.imports.submit, path)
    finally:
        path.unlink(missing_ok=True)  # gone already once submitted
    return ok(job(submitted))


@router.get("/imports/{job_id}", summary="Progress of an import job")
def import_status(job_id: str, engine: EngineDep) -> Envelope:
    return ok(job(engine.imports.get(job_id)))


@router.delete("/imports/{job_id}", summary="Forget an import job that ended")
def delete_import(job_id: str, engine: EngineDep) -> Envelope:
    """Only a job that is done or failed; one still queued or running is answered 409."""
    engine.imports.delete(job_id)
    return ok({"jobId": job_id, "deleted": True})


@router.get("/imports", summary="Every import job")
def import_list(engine: EngineDep) -> Envelope:
    return ok([job(each) for each in engine.imports.jobs()])


@router.get("/export", summary="The whole catalog as JSONL")
async def export(request: Request, engine: EngineDep, base: BaseUrl) -> StreamingResponse:
    """One record per line in the `tongkuan ingest` format, pictures as absolute URLs, so
    another tongkuan can import it."""

    def absolute(name: str) -> str:
        return f"{request.url.scheme}:{stored_url(name, base)}"

    async def lines() -> AsyncIterator[bytes]:
        async for record in iterate_in_threadpool(engine.export_records(absolute)):
            yield (json.dumps(record, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


_CHECKS_BODY = {"requestBody": {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}}


@router.post("/evaluations", summary="Run a check set on the catalog", openapi_extra=_CHECKS_BODY)
async def start_evaluation(request: Request, evaluations: EvaluationsDep) -> Envelope:
    """The body is a check set (JSONL, one `{"picture": URL or "imageId": ..., "itemIds": [...]}`
    a line, as `tongkuan eval` reads). Answers at once; poll the evaluation for its figures."""
    body = await request.body()
    if not body.strip():
        raise ParameterError("the body is empty: send a check set, one JSON check per line")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParameterError("the check set must be UTF-8 text") from exc
    try:
        started = await run_in_threadpool(evaluations.submit, text)
    except CheckSetError as exc:
        raise ParameterError(str(exc)) from exc
    return ok(evaluation(started))


@router.get("/evaluations/{evaluation_id}", summary="Progress and figures of an evaluation")
def evaluation_status(evaluation_id: str, evaluations: EvaluationsDep) -> Envelope:
    return ok(evaluation(evaluations.get(evaluation_id)))


@router.get("/evaluations", summary="The evaluations this process ran")
def evaluation_list(evaluations: EvaluationsDep) -> Envelope:
    return ok([evaluation(run) for run in evaluations.runs()])


@router.post("/checks", summary="Save a search as a check: this picture shows these products")
async def save_check(request: Request, evaluations: EvaluationsDep) -> Envelope:
    """One check as JSON (`imageId` of the uploaded picture, `itemIds`, optional `region`,
    `categoryId`, `note`), appended to the saved check set."""
    line = await _json_object(request, "the check")
    try:
        saved = await run_in_threadpool(evaluations.save, line)
    except CheckSetError as exc:
        raise ParameterError(str(exc)) from exc
    return ok({"imageId": saved.picture, "itemIds": sorted(saved.item_ids)})


@router.get("/checks", summary="The saved check set, as JSONL")
def saved_checks(evaluations: EvaluationsDep) -> Response:
    return Response(evaluations.saved_text(), media_type="application/x-ndjson")

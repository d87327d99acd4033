"""Running a check set through the same search as the HTTP API: the picture decoded within
the same limits, the region clipped as the API clips it, the same subject, ranking and
pages. A run keeps each finished check in a progress file, so an interrupted run resumes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from tongkuan.domain.boxes import Box
from tongkuan.domain.products import Product, is_web_url
from tongkuan.engine import Engine
from tongkuan.errors import ImageError, ParameterError
from tongkuan.evaluation.checks import Check
from tongkuan.evaluation.scoring import DEPTH, Outcome, Scores, score
from tongkuan.search.query import SearchQuery, SearchResults

MIN_REGION_SIDE = 8  # the API's smallest region, in pixels


@dataclass(frozen=True)
class Evaluation:
    """A check set's run on one model: each check's outcome and the figures."""

    model: str
    outcomes: list[Outcome]
    scores: Scores


def evaluate(
    engine: Engine,
    checks: Sequence[Check],
    resume: Path | None = None,
    progress: bool = True,
    each: Callable[[Outcome], object] | None = None,
) -> Evaluation:
    """Search every check's picture in `engine`'s catalog and score where its right products
    ranked (`each` hears of every outcome). With `resume` (a file), checks finished by an
    earlier run of the same checks and model are not searched again, and the file goes once
    the run is whole."""
    done = _done(resume)
    outcomes: list[Outcome] = []
    with _kept(resume) as keep, tqdm(total=len(checks), desc="checking", unit="query", disable=not progress) as bar:
        for check in checks:
            outcome = done.get(check.line) or run_check(engine, check)
            if check.line not in done and keep is not None:
                keep.write(json.dumps(outcome.to_json()) + "\n")
                keep.flush()
            outcomes.append(outcome)
            if each is not None:
                each(outcome)
            bar.update()
    if resume is not None:
        resume.unlink(missing_ok=True)
    return Evaluation(engine.vision.spec.name, outcomes, score(outcomes))


def progress_file(folder: Path, checks_file: Path, model: str) -> Path:
    """Where a run of `checks_file` on `model` keeps its finished checks: changing either
    starts afresh."""
    digest = hashlib.sha256(checks_file.read_bytes() + model.encode()).hexdigest()[:16]
    return folder / f"{digest}.jsonl"


def run_check(engine: Engine, check: Check) -> Outcome:
    """One check's search, as `GET /taobao/image-search/url` with its `region` runs it."""
    try:
        data = picture_bytes(engine, check)
        picture = engine.decode(data)
        region = None if check.region is None else _fit(check.region, *picture.size)
        results = engine.search(picture, SearchQuery(limit=DEPTH, region=region))
    except (OSError, ImageError, ParameterError) as exc:
        return Outcome(check.line, None, None, failed=f"{check.picture}: {exc}")
    return outcome_of(check, results)


def picture_bytes(engine: Engine, check: Check) -> bytes:
    """The check's picture: uploaded to the service, fetched under `picUrl`'s rules, or read."""
    if check.uploaded:
        return engine.uploaded_picture(check.picture)
    return engine.fetch(check.picture) if is_web_url(check.picture) else Path(check.picture).read_bytes()


def outcome_of(check: Check, results: SearchResults) -> Outcome:
    """Where the first right product ranked among `results`, and whether the category was right."""
    found = [hit.product.item_id for hit in results.hits]
    rank = next((n for n, item_id in enumerate(found, start=1) if item_id in check.item_ids), None)
    category = None
    if check.category is not None:
        category = bool(results.categories) and results.categories[0].category == check.category
    return Outcome(check.line, rank, found[0] if found else None, category)


def _fit(box: Box, width: int, height: int) -> Box:
    clipped = box.clipped(width, height)  # as the API clips a region
    if clipped.x2 - clipped.x1 < MIN_REGION_SIDE or clipped.y2 - clipped.y1 < MIN_REGION_SIDE:
        raise ParameterError(f"region {box.to_param()} leaves less than 8x8 pixels inside the {width}x{height} picture")
    return clipped


def _done(resume: Path | None) -> dict[int, Outcome]:
    if resume is None or not resume.exists():
        return {}
    done = {}
    for raw in resume.read_text().splitlines():
        try:
            outcome = Outcome.from_json(json.loads(raw))
        except (ValueError, TypeError):
            continue  # a line cut short when the run stopped
        done[outcome.line] = outcome
    return done


@contextmanager
def _kept(resume: Path | None) -> Iterator[TextIO | None]:
    if resume is None:
        yield None
        return
    resume.parent.mkdir(parents=True, exist_ok=True)
    with resume.open("a", encoding="utf-8") as file:
        yield file


def catalog_products(engine: Engine) -> Iterator[Product]:
    """Every product of the catalog, a page at a time (to resolve a check set's itemIds)."""
    after: str | None = None
    while page := engine.catalog.products(after=after, limit=1000):
        yield from page
        after = page[-1].item_id

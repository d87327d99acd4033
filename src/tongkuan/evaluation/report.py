"""The misses of a check set's run as one static HTML page: each query picture beside what
came first and where the right product ranked. Operators would rather look than read."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from tongkuan.domain.products import is_web_url
from tongkuan.engine import Engine
from tongkuan.errors import ImageError, ProductNotFound
from tongkuan.evaluation.checks import Check
from tongkuan.evaluation.runner import Evaluation, picture_bytes
from tongkuan.evaluation.scoring import DEPTH

THUMB = 240  # pixels, the longer side of the pictures shown
_STYLE = """
body{font:15px/1.4 system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;margin:24px;color:#1d2127}
h1{font-size:20px;margin:0 0 4px}p.figures{margin:0 0 20px;color:#4a5160}
table{border-collapse:collapse}td,th{border-top:1px solid #dde1e7;padding:10px 14px;text-align:left;vertical-align:top}
img{max-width:240px;max-height:240px;display:block;border-radius:4px;background:#f3f4f6}
.rank{font-weight:600}.none{color:#b42318}.note{color:#4a5160;font-size:13px}
"""


def write_report(folder: Path, engine: Engine, checks: Sequence[Check], run: Evaluation) -> Path:
    """Write `index.html` (and the thumbnails it shows) into `folder`; returns the page."""
    folder.mkdir(parents=True, exist_ok=True)
    by_line = {check.line: check for check in checks}
    rows = []
    for outcome in run.outcomes:
        if outcome.rank == 1:
            continue
        check = by_line[outcome.line]
        query = _thumbnail(folder, f"query-{check.line}", check, engine)
        first = _first_picture(folder, engine, outcome.first, check.line)
        if outcome.failed:
            where = f'<span class="none">not searched: {html.escape(outcome.failed)}</span>'
        elif outcome.rank is None:
            where = f'<span class="none">not in the first {DEPTH}</span>'
        else:
            where = f'<span class="rank">ranked {outcome.rank}</span>'
        right = ", ".join(sorted(check.item_ids))
        note = f'<div class="note">{html.escape(check.note)}</div>' if check.note else ""
        rows.append(
            f"<tr><td>line {check.line}{note}</td><td>{query}</td>"
            f"<td>{first}<div>{html.escape(outcome.first or '')}</div></td>"
            f"<td>{html.escape(right)}<div>{where}</div></td></tr>"
        )
    figures = run.scores.to_json()
    shown = " · ".join(f"{key} {value}" for key, value in figures.items())
    body = "\n".join(rows) or '<tr><td colspan="4">no misses: every right product came first</td></tr>'
    page = folder / "index.html"
    page.write_text(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Misses · {html.escape(run.model)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head><body>'
        f"<h1>Misses of {html.escape(run.model)}</h1><p class=figures>{html.escape(shown)}</p>"
        "<table><thead><tr><th>check</th><th>query picture</th><th>came first</th><th>right product</th></tr>"
        f"</thead><tbody>{body}</tbody></table></body></html>",
        encoding="utf-8",
    )
    return page


def _first_picture(folder: Path, engine: Engine, item_id: str | None, line: int) -> str:
    if item_id is None:
        return '<span class="none">nothing</span>'
    try:
        stored = engine.catalog.first_images([item_id]).get(item_id)
    except ProductNotFound:
        stored = None
    if stored is None:
        return ""
    if is_web_url(stored.location):
        return f'<img src="{html.escape(stored.location)}" alt="{html.escape(item_id)}">'
    picture = Check(line, str(engine.stored_picture_path(stored.location)), frozenset())
    return _thumbnail(folder, f"first-{line}", picture, engine)


def _thumbnail(folder: Path, name: str, check: Check, engine: Engine) -> str:
    """A small copy of the check's picture beside the page (a URL is shown where it is)."""
    if is_web_url(check.picture) and not check.uploaded:
        return f'<img src="{html.escape(check.picture)}" alt="">'
    target = folder / f"{name}.jpg"
    try:
        image = engine.decode(picture_bytes(engine, check)).image.copy()  # within the decode limits
    except (OSError, ImageError):
        return '<span class="none">unreadable</span>'
    image.thumbnail((THUMB, THUMB))
    image.convert("RGB").save(target, quality=85)
    return f'<img src="{html.escape(target.name)}" alt="">'

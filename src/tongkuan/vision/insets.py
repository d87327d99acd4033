"""Pictures inside the picture: a product shot shown within a larger image.

Shoppers search with screenshots (a product page, a chat, a post) and with photos of a
screen or a printed page; the product is then a picture with a border of its own. Its
border is unlike anything in a natural scene: four straight, axis-aligned step edges that
meet at corners, stop there, and enclose no line across the whole picture. The activation
map does not see borders (it finds whatever is salient, often the scene's own product),
so this finds them from image gradients:

1. long horizontal and vertical edge runs (colour gradients, small gaps closed);
2. every rectangle whose four sides lie on such runs, scored by how much of each side is
   edge (all four must be mostly edge);
3. rejected when its sides run on past the corners, when the colour does not change across
   a side all along it, or when a line spans its inside (a grid, plaid, stripes).

What survives, the largest best-supported first, is the main subject. Studio shots (a
border ring of one colour) are not searched: what looks like an inset there is a panel
printed on the product. Photos without an inset rarely yield one (measured in
docs/benchmarks.md), so they keep the activation map's subject.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tongkuan.domain.boxes import Box

Array = NDArray[Any]  # counts and shares

_SIDE = 384  # working resolution (longer side)
_EDGE = 24.0  # colour step (0-255) that counts as an edge
_GAP = 5  # gaps in an edge run closed up to this many pixels
_MIN_SIDE = 0.2  # an inset's sides are at least this share of the image's shorter side
_MAX_LINES = 40  # strongest edge rows and columns considered
_SUPPORT = 0.75  # share of each side that must be edge
_OVERSHOOT = 0.5  # past the corners, mean edge share allowed on the sides' extensions
_EXTENSION = 0.1  # length of those extensions, as a share of the side...
_PAST = 4  # ...starting this many pixels past the corner (the border's own blur)
_STEP = 20.0  # colour change across a side (just inside against just outside)...
_STEP_SUPPORT = 0.7  # ...along at least this share of each side
_INNER_MARGIN = 0.1  # lines this close to a side count as its border, not as a grid
_CROSSING = 0.15  # a line inside that is edge on this much of its extensions runs on outside
_MIN_AREA, _MAX_AREA = 0.03, 0.8  # share of the image an inset covers
# A studio shot or a plain page has a border ring of one colour (catalog shots: >= 80 % of
# the ring in 96-97 %; photos and composites: 0-1.4 %). Any "inset" there is a panel
# printed on the product, and the activation map finds the product on plain ground anyway.
_PLAIN = 0.8
_RING = 0.06  # the ring's width, as a share of the image's side
_SAME_COLOUR = 12  # per channel, from the ring's median colour


def find_inset(image: Image.Image) -> Box | None:
    """The picture shown inside `image`, in its pixels, or None when there is none."""
    width, height = image.size
    scale = _SIDE / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.mode != "RGB":
        image = image.convert("RGB")
    factor = int(max(width, height) / (2 * _SIDE))
    if factor > 1:  # a large photo: a cheap box reduction first (36 MP: 320 -> 40 ms)
        image = image.reduce(factor)
    small = image.resize(size, Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.uint8)
    if _plain_border(rgb) >= _PLAIN:
        return None
    h, w = rgb.shape[:2]
    shortest = max(8, int(_MIN_SIDE * min(h, w)))
    # colour gradients (0-255 steps: Sobel / 4), the strongest channel's
    gx = _channel_max(cv2.convertScaleAbs(cv2.Sobel(rgb, cv2.CV_16S, 1, 0, ksize=3), alpha=0.25))
    gy = _channel_max(cv2.convertScaleAbs(cv2.Sobel(rgb, cv2.CV_16S, 0, 1, ksize=3), alpha=0.25))
    rows = _runs((gy > _EDGE) & (gy > gx), shortest, horizontal=True)
    cols = _runs((gx > _EDGE) & (gx > gy), shortest, horizontal=False)
    inner_rows, inner_cols = _lines(rows, 1, shortest), _lines(cols, 0, shortest)
    if not _can_enclose(inner_rows, inner_cols, h, w):  # most photos: the rest costs more than all this
        return None
    # the image's own border may be one side of an inset that touches it
    ys = np.unique(np.r_[0, inner_rows, h - 1])
    xs = np.unique(np.r_[0, inner_cols, w - 1])
    along_rows = _running(rows, axis=1)  # [y, x]: edge pixels in row y before x
    along_cols = _running(cols, axis=0)  # [y, x]: edge pixels in column x above y
    # rectangles whose four sides are all mostly edge, found without scoring every one:
    # which rows are mostly edge between each pair of columns, and columns between rows
    ny, nx = len(ys), len(xs)
    left, right = np.triu_indices(nx, 1)
    row_edge = (along_rows[ys][:, xs[right]] - along_rows[ys][:, xs[left]]) / np.maximum(xs[right] - xs[left], 1)
    top, bottom = np.triu_indices(ny, 1)
    heights = np.maximum(ys[bottom] - ys[top], 1)[:, None]
    col_edge = (along_cols[ys[bottom]][:, xs] - along_cols[ys[top]][:, xs]) / heights
    row_ok = (row_edge >= _SUPPORT) | ((ys == 0) | (ys == h - 1))[:, None]  # (rows, column pairs)
    col_ok = (col_edge >= _SUPPORT) | ((xs == 0) | (xs == w - 1))[None, :]  # (row pairs, columns)
    tall = ys[bottom] - ys[top] >= shortest
    wide = xs[right] - xs[left] >= shortest
    found = (
        row_ok[top][:, wide] & row_ok[bottom][:, wide] & col_ok[:, left[wide]] & col_ok[:, right[wide]] & tall[:, None]
    )
    pair_y, pair_x = np.nonzero(found)
    if not len(pair_y):
        return None
    a, b = xs[left[wide][pair_x]], xs[right[wide][pair_x]]
    c, d = ys[top[pair_y]], ys[bottom[pair_y]]
    on_border = np.stack([c == 0, d == h - 1, a == 0, b == w - 1])  # top, bottom, left, right
    candidates = on_border.sum(axis=0) <= 1
    a, b, c, d, on_border = a[candidates], b[candidates], c[candidates], d[candidates], on_border[:, candidates]

    def row_share(y: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]) -> Array:
        return _share(along_rows, y, lo, hi, horizontal=True)

    def col_share(x: NDArray[np.int64], lo: NDArray[np.int64], hi: NDArray[np.int64]) -> Array:
        return _share(along_cols, x, lo, hi, horizontal=False)

    sides = np.stack([row_share(c, a, b), row_share(d, a, b), col_share(a, c, d), col_share(b, c, d)])
    support = np.where(on_border, 1.0, sides).min(axis=0)  # >= _SUPPORT: kept only such rectangles above
    area = (b - a) * (d - c) / (h * w)
    ex, ey, gap = _extension(b - a), _extension(d - c), _PAST
    past_corners = np.stack(
        [
            row_share(c, a - gap - ex, a - gap) + row_share(c, b + gap, b + gap + ex),
            row_share(d, a - gap - ex, a - gap) + row_share(d, b + gap, b + gap + ex),
            col_share(a, c - gap - ey, c - gap) + col_share(a, d + gap, d + gap + ey),
            col_share(b, c - gap - ey, c - gap) + col_share(b, d + gap, d + gap + ey),
        ]
    )
    overshoot = np.where(on_border, 0.0, past_corners).sum(axis=0) / (2 * (4 - on_border.sum(axis=0)))
    keep = (support >= _SUPPORT) & (area >= _MIN_AREA) & (area <= _MAX_AREA) & (overshoot <= _OVERSHOOT)
    a, b, c, d, support, area = a[keep], b[keep], c[keep], d[keep], support[keep], area[keep]
    on_border = on_border[:, keep]
    if not len(a):
        return None
    keep = _steps_all_along(rgb, a, b, c, d, on_border) & ~_spanned_inside(along_rows, along_cols, ys, xs, a, b, c, d)
    if not keep.any():
        return None
    best = int(np.argmax(np.where(keep, support + 0.1 * area, -1.0)))
    return Box(
        int(a[best] / scale), min(width, int(b[best] / scale)), int(c[best] / scale), min(height, int(d[best] / scale))
    )


def _can_enclose(rows: NDArray[np.int64], cols: NDArray[np.int64], h: int, w: int) -> bool:
    """Whether edge lines inside the image could make three sides of a rectangle: an inset
    has at most one side on the image's border, so it needs two lines inside the image one
    way and one the other."""
    across = int(((rows > 0) & (rows < h - 1)).sum())
    down = int(((cols > 0) & (cols < w - 1)).sum())
    return (across >= 1 and down >= 2) or (across >= 2 and down >= 1)


def _plain_border(rgb: NDArray[np.uint8]) -> float:
    """Share of the image's outer ring within `_SAME_COLOUR` of the ring's median colour."""
    small = cv2.resize(rgb, (128, 128), interpolation=cv2.INTER_AREA).astype(np.int16)
    band = max(2, int(_RING * 128))
    ring = np.concatenate(
        [
            small[:band].reshape(-1, 3),
            small[-band:].reshape(-1, 3),
            small[band:-band, :band].reshape(-1, 3),
            small[band:-band, -band:].reshape(-1, 3),
        ]
    )
    return float((np.abs(ring - np.median(ring, axis=0)).max(axis=1) <= _SAME_COLOUR).mean())


def _channel_max(image: NDArray[Any]) -> NDArray[Any]:
    """Per-pixel maximum over the colour channels (numpy's max over a 3-long axis is slow)."""
    out: NDArray[Any] = np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])
    return out


def _running(mask: NDArray[np.bool_] | NDArray[np.uint8], axis: int) -> NDArray[np.int32]:
    """Running count along rows (axis 1) or columns (axis 0), with a leading zero."""
    total = np.cumsum(mask, axis=axis, dtype=np.int32)
    out: NDArray[np.int32] = np.pad(total, ((0, 0), (1, 0)) if axis == 1 else ((1, 0), (0, 0)))
    return out


def _runs(edges: NDArray[np.bool_], shortest: int, horizontal: bool) -> NDArray[Any]:
    """Edge pixels on straight runs at least `shortest` long (a pixel of slack across)."""
    mask: NDArray[Any] = edges.astype(np.uint8)
    across, along = ((3, 1), (1, _GAP)) if horizontal else ((1, 3), (_GAP, 1))
    mask = cv2.morphologyEx(cv2.dilate(mask, np.ones(across, np.uint8)), cv2.MORPH_CLOSE, np.ones(along, np.uint8))
    line = (1, shortest) if horizontal else (shortest, 1)
    out: NDArray[Any] = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones(line, np.uint8))
    return out


def _lines(runs: NDArray[np.uint8], axis: int, shortest: int) -> NDArray[np.int64]:
    """Rows (axis 1) or columns (axis 0) holding runs: the strongest of each adjacent group."""
    strength = runs.sum(axis=axis).astype(np.int64)
    groups: list[list[int]] = []
    for position in np.flatnonzero(strength >= shortest):
        if groups and position - groups[-1][-1] <= 2:
            groups[-1].append(int(position))
        else:
            groups.append([int(position)])
    best = sorted((max(g, key=lambda p: strength[p]) for g in groups), key=lambda p: -strength[p])[:_MAX_LINES]
    return np.array(sorted(best), dtype=np.int64)


def _steps_all_along(
    rgb: NDArray[np.uint8],
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    c: NDArray[np.int64],
    d: NDArray[np.int64],
    on_border: NDArray[np.bool_],
) -> NDArray[np.bool_]:
    """Whether the colour changes across every side (3 px in against 3 px out) along most of
    it; a side on the image's border has no outside and passes."""
    smooth = cv2.blur(rgb, (3, 3))
    padded = cv2.copyMakeBorder(smooth, 3, 3, 3, 3, cv2.BORDER_REPLICATE)
    # across a row y: pixels 3 above against 3 below; across a column x: 3 left against 3 right
    across_row = _channel_max(cv2.absdiff(padded[6:, 3:-3], padded[:-6, 3:-3])) > _STEP
    across_col = _channel_max(cv2.absdiff(padded[3:-3, 6:], padded[3:-3, :-6])) > _STEP
    along_row, along_col = _running(across_row, axis=1), _running(across_col, axis=0)
    sides = np.stack(
        [
            (along_row[c, b] - along_row[c, a]) / (b - a),
            (along_row[d, b] - along_row[d, a]) / (b - a),
            (along_col[d, a] - along_col[c, a]) / (d - c),
            (along_col[d, b] - along_col[c, b]) / (d - c),
        ]
    )
    return np.where(on_border, 1.0, sides).min(axis=0) >= _STEP_SUPPORT  # type: ignore[no-any-return]


def _spanned_inside(
    along_rows: Array,
    along_cols: Array,
    ys: NDArray[np.int64],
    xs: NDArray[np.int64],
    a: NDArray[np.int64],
    b: NDArray[np.int64],
    c: NDArray[np.int64],
    d: NDArray[np.int64],
) -> NDArray[np.bool_]:
    """Whether an edge line crosses the rectangle's whole inside (away from its border) and
    runs on outside it: stripes or a grid, not a product's own edges within its picture."""
    ex, ey, gap = _extension(b - a), _extension(d - c), _PAST
    spanned = np.zeros(len(a), dtype=bool)
    for y in ys:
        inside = (y > c + _INNER_MARGIN * (d - c)) & (y < d - _INNER_MARGIN * (d - c))
        across = _share(along_rows, y, a, b, horizontal=True) >= _SUPPORT
        before = _share(along_rows, y, a - gap - ex, a - gap, horizontal=True)
        after = _share(along_rows, y, b + gap, b + gap + ex, horizontal=True)
        spanned |= inside & across & ((before + after) / 2 > _CROSSING)
    for x in xs:
        inside = (x > a + _INNER_MARGIN * (b - a)) & (x < b - _INNER_MARGIN * (b - a))
        across = _share(along_cols, x, c, d, horizontal=False) >= _SUPPORT
        before = _share(along_cols, x, c - gap - ey, c - gap, horizontal=False)
        after = _share(along_cols, x, d + gap, d + gap + ey, horizontal=False)
        spanned |= inside & across & ((before + after) / 2 > _CROSSING)
    return spanned


def _share(
    running: Array, line: NDArray[np.int64] | np.int64, lo: NDArray[np.int64], hi: NDArray[np.int64], horizontal: bool
) -> Array:
    """Share of edge pixels on `line` (a row if `horizontal`, else a column) between `lo`
    and `hi`, from running counts along it; 0 for a segment outside the image."""
    limit = running.shape[1 if horizontal else 0] - 1
    lo, hi = np.clip(lo, 0, limit), np.clip(hi, 0, limit)
    counted = running[line, hi] - running[line, lo] if horizontal else running[hi, line] - running[lo, line]
    return np.where(hi > lo, counted / np.maximum(hi - lo, 1), 0.0)


def _extension(side: NDArray[np.int64]) -> NDArray[np.int64]:
    """How far past a corner a side is followed, for a side this long."""
    out: NDArray[np.int64] = np.maximum(3, (side * _EXTENSION).astype(int))
    return out

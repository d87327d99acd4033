"""Turning untrusted bytes into RGB pixels: format whitelist, pixel limit, EXIF orientation,
and no more pixels, or memory, than the model needs.

A tiny file can declare a huge picture (a 34-byte WebP of 6000x6000). So the declared size
is checked before anything is decoded; JPEGs decode reduced (by 1/2, 1/4 or 1/8, in the
decoder itself) to what the model needs; every decode holds its expected peak memory from a
shared `DecodeBudget` while it runs; and pictures are kept at most about twice the size the
model needs, so what outlives the decode is small too. Boxes on the picture stay in its own
pixels: `Decoded.size` is the picture's size, `Decoded.image` may be smaller.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from tongkuan.domain.boxes import Box
from tongkuan.errors import ImageTooLarge, InvalidImage, ServiceBusy

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})
UPLOAD_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MIN_SIDE = 8
# The longer side pictures keep at least: the model sees 224-260 px, of the whole picture or
# of a subject a quarter of its side or more. No picture of the quality benchmarks is larger.
DECODE_SIDE = 1024
# Peak bytes per decoded pixel, measured (6000x6000 files, Pillow 13, the process's peak
# RSS): WebP 16 (the decoder's buffer, the image, the RGB copy), PNG and JPEG 4 once no copy
# is made; 8 covers palette, grey, CMYK and RGBA pictures converted to RGB.
PEAK_BYTES_PER_PIXEL = {"WEBP": 16}
DEFAULT_PEAK_BYTES_PER_PIXEL = 8
# A progressive JPEG is decoded from coefficient buffers over its whole frame, however much the
# decoder reduces it: 2 bytes per sample of each component (measured: a 9400x9400 one, 1 MB on
# disk, held 514 MB to decode reduced to 1175x1175).
COEFFICIENT_BYTES_PER_SAMPLE = 2
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_OWN_MAPPING = 1 << 20  # allocations of at least this many bytes get pages of their own
_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def return_freed_pictures_to_the_system() -> bool:
    """Have glibc give the memory of large buffers (picture pixels, decoder buffers) back to
    the system when they are freed, in every thread; returns whether it could.

    By default glibc raises its threshold for mapping a buffer on its own once such buffers
    are freed, after which they come from per-thread heaps that keep the memory: measured,
    sixteen threads decoding 4096x4096 pictures one at a time kept 540-730 MB resident,
    against 260 MB with this (the budget's 300 MB bounds both only with it)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _OWN_MAPPING))
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        return False


class DecodeBudget:
    """Memory that decodes may hold at once, shared by every thread of a process.

    A decode takes its expected peak before it starts and gives it back when done; one that
    does not fit waits for others to finish, up to `wait` seconds, then is refused
    (`ServiceBusy`). A decode larger than the whole budget runs alone."""

    def __init__(self, max_bytes: int, wait: float) -> None:
        self.max_bytes = max_bytes
        self.wait = wait
        self._used = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = min(nbytes, self.max_bytes)
        with self._changed:
            if not self._changed.wait_for(lambda: self._used + nbytes <= self.max_bytes, timeout=self.wait):
                raise ServiceBusy(f"picture decoding is at its memory limit for {self.wait:g} s; try again shortly")
            self._used += nbytes
        try:
            yield
        finally:
            with self._changed:
                self._used -= nbytes
                self._changed.notify_all()

    @property
    def used(self) -> int:
        with self._changed:
            return self._used


@dataclass(frozen=True)
class Decoded:
    """A decoded picture: `image` (upright RGB, possibly reduced) and `size`, the picture's
    own upright size, in which boxes are given and answered."""

    image: Image.Image
    size: tuple[int, int]
    key: str | None = None  # the bytes' content hash, where the caller will search it again

    @property
    def scale(self) -> tuple[float, float]:
        """Picture pixels per image pixel, across and down."""
        return self.size[0] / self.image.size[0], self.size[1] / self.image.size[1]

    def to_pixels(self, box: Box) -> Box:
        """A box on the picture, on its decoded (possibly reduced) pixels, `image`; it covers
        at least the same part of the picture."""
        sx, sy = self.scale
        width, height = self.image.size
        return Box(
            min(int(box.x1 / sx), width - 1),
            max(min(-int(-box.x2 // sx), width), 1),
            min(int(box.y1 / sy), height - 1),
            max(min(-int(-box.y2 // sy), height), 1),
        )

    def to_picture(self, box: Box) -> Box:
        """A box on the decoded pixels, `image`, on the picture."""
        sx, sy = self.scale
        width, height = self.size
        return Box(
            min(round(box.x1 * sx), width),
            min(round(box.x2 * sx), width),
            min(round(box.y1 * sy), height),
            min(round(box.y2 * sy), height),
        )


def decode_image(
    data: bytes, max_pixels: int, formats: frozenset[str] = ALLOWED_FORMATS, budget: DecodeBudget | None = None
) -> Image.Image:
    """The pixels of `decode_picture`, for callers that report no boxes."""
    return decode_picture(data, max_pixels, formats, budget).image


def decode_picture(
    data: bytes, max_pixels: int, formats: frozenset[str] = ALLOWED_FORMATS, budget: DecodeBudget | None = None
) -> Decoded:
    """Decode `data` to an upright RGB picture, reduced to what the model needs.

    Raises `InvalidImage` for anything that is not a whole image in one of `formats`,
    `ImageTooLarge` when the pixels to decode exceed `max_pixels` (checked before decoding,
    so a decompression bomb costs nothing) and `ServiceBusy` when `budget` stays full.
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            if image.format not in formats:
                raise InvalidImage(
                    f"image format {image.format} is not supported; use one of {', '.join(sorted(formats))}"
                )
            width, height = image.size
            if min(width, height) < MIN_SIDE:
                raise InvalidImage(f"image is {width}x{height} pixels; each side must be at least {MIN_SIDE}")
            frame = _progressive_frame_bytes(image)
            if frame and width * height > max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} pixels; the limit is {max_pixels} pixels "
                    "(a progressive JPEG is decoded over its whole frame)"
                )
            if image.format == "JPEG" and max(width, height) > 2 * DECODE_SIDE:
                # the decoder itself scales by 1/2, 1/4 or 1/8, keeping at least the size asked for
                shrink = DECODE_SIDE / max(width, height)
                image.draft("RGB", (max(1, int(width * shrink)), max(1, int(height * shrink))))
            decoded = image.size[0] * image.size[1]
            if decoded > max_pixels:
                raise ImageTooLarge(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
            peak = frame + decoded * PEAK_BYTES_PER_PIXEL.get(image.format or "", DEFAULT_PEAK_BYTES_PER_PIXEL)
            with budget.hold(peak) if budget is not None else nullcontext():
                image.load()  # before reading EXIF: a PNG may keep it after the pixels
                if image.getexif().get(_ORIENTATION) in _TURNED:
                    width, height = height, width
                pixels = _upright_rgb(image)
                if pixels is not image:
                    image.close()  # the decoder's buffers go now, inside the budget, not later
            return Decoded(pixels, (width, height))
    except (InvalidImage, ImageTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image exceeds the pixel limit: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImage(f"the bytes are not a readable image ({type(exc).__name__})") from exc


def _progressive_frame_bytes(image: Image.Image) -> int:
    """Bytes a progressive JPEG's decoder keeps for the whole frame's coefficients; 0 for any
    other picture, whose decoder holds only the (reduced) pixels."""
    if image.format != "JPEG" or not (image.info.get("progressive") or image.info.get("progression")):
        return 0
    layers: list[tuple[str, int, int, int]] = getattr(image, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(h for _, h, _, _ in layers)
    v_max = max(v for _, _, v, _ in layers)
    width, height = image.size
    # each component's samples, in whole 8x8 blocks, at its own sampling
    samples = sum(-(-width * h // (h_max * 8)) * 8 * -(-height * v // (v_max * 8)) * 8 for _, h, v, _ in layers)
    return samples * COEFFICIENT_BYTES_PER_SAMPLE


def _upright_rgb(image: Image.Image) -> Image.Image:
    """A loaded `image` upright, in RGB, reduced to at most about twice `DECODE_SIDE`."""
    ImageOps.exif_transpose(image, in_place=True)  # no copy when it is upright already
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    factor = max(rgb.size) // DECODE_SIDE
    if factor >= 2:
        return rgb.reduce(factor)  # box-filtered: the model's resize sees the same picture
    return rgb


def content_hash(data: bytes) -> str:
    """The hex SHA-256 of the bytes: image ids and idempotent ingestion key on it."""
    return hashlib.sha256(data).hexdigest()


def sniff_extension(data: bytes) -> str:
    """A file extension from the magic bytes, for serving stored images with the right type."""
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    if data.startswith(b"\x89PNG"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"GIF8"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    return "bin"

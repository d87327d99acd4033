"""Turning untrusted bytes into RGB pixels: format whitelist, pixel limit, EXIF orientation."""

from __future__ import annotations

import hashlib
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from tongkuan.errors import ImageTooLarge, InvalidImage

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})
UPLOAD_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MIN_SIDE = 8


def decode_image(data: bytes, max_pixels: int, formats: frozenset[str] = ALLOWED_FORMATS) -> Image.Image:
    """Decode `data` to an upright RGB image.

    Raises `InvalidImage` for anything that is not a whole image in one of `formats`, and
    `ImageTooLarge` when the declared size exceeds `max_pixels` (checked before decoding,
    so a decompression bomb costs nothing).
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
            if width * height > max_pixels:
                raise ImageTooLarge(f"image is {width}x{height} pixels; the limit is {max_pixels} pixels")
            if min(width, height) < MIN_SIDE:
                raise InvalidImage(f"image is {width}x{height} pixels; each side must be at least {MIN_SIDE}")
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # no copy when it is upright already
            return image if image.mode == "RGB" else image.convert("RGB")
    except (InvalidImage, ImageTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image exceeds the pixel limit: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImage(f"the bytes are not a readable image ({type(exc).__name__})") from exc


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

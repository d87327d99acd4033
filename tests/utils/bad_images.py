"""A corpus of hostile and unusual pictures, generated (nothing downloaded).

Each case says what the service must answer: 200 (a valid picture, however odd) or 400.
`upload_ok` is separate because uploads accept only JPEG, PNG and WEBP.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    search_ok: bool  # picUrl search answers 200
    upload_ok: bool  # upload answers 200


def _save(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    return Image.effect_noise(size, 64).convert("RGB")


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_photo(), "JPEG", exif=exif)


def _huge_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    return _save(_photo(), "JPEG", exif=exif)


def corpus() -> list[Case]:
    jpeg = _save(_photo(), "JPEG")
    png = _save(_photo(), "PNG")
    noise = np.random.default_rng(0).integers(0, 256, (1300, 1300, 3), dtype=np.uint8)
    big_noise = _save(Image.fromarray(noise), "PNG")  # incompressible: over 4 MB
    bomb = _save(Image.new("1", (20_000, 20_000)), "PNG")  # 400 M pixels in a few kB
    assert len(big_noise) > 4 * 1024 * 1024
    return [
        Case("zero bytes", b"", False, False),
        Case("truncated jpeg", jpeg[: len(jpeg) // 2], False, False),
        Case("truncated png", png[: len(png) // 2], False, False),
        Case("wrong magic", b"\x00\x01\x02\x03" + jpeg[4:], False, False),
        Case("plain text", b"this is not a picture at all\n" * 10, False, False),
        Case("html", b"<!doctype html><html><body><img src=x></body></html>", False, False),
        Case("svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect/></svg>', False, False),
        Case("decompression bomb", bomb, False, False),
        Case("1x1 pixel", _save(Image.new("RGB", (1, 1)), "PNG"), False, False),
        Case("20000x20 strip", _save(Image.new("RGB", (20_000, 20), (200, 10, 10)), "PNG"), True, True),
        Case("cmyk jpeg", _save(_photo().convert("CMYK"), "JPEG"), True, True),
        Case("16-bit png", _save(Image.new("I;16", (64, 48), 30_000), "PNG"), True, True),
        Case("palette png", _save(_photo().convert("P"), "PNG"), True, True),
        Case("rgba png", _save(_photo().convert("RGBA"), "PNG"), True, True),
        Case("animated gif", _animated("GIF"), True, False),
        Case("animated webp", _animated("WEBP"), True, True),
        Case("exif rotated jpeg", _exif_rotated(), True, True),
        Case("huge exif block", _huge_exif(), True, True),
        Case("over 4 MB", big_noise, False, False),
        Case("bmp", _save(_photo(), "BMP"), True, False),
        Case("tiff", _save(_photo(), "TIFF"), True, False),
        Case("grayscale jpeg", _save(_photo().convert("L"), "JPEG"), True, True),
        Case("jpeg with trailing garbage", jpeg + b"\x00garbage" * 100, True, True),
    ]

"""Decoding untrusted bytes: formats, limits, orientation."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tongkuan.errors import ImageTooLarge, InvalidImage
from tongkuan.images.decode import UPLOAD_FORMATS, decode_image


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def test_exif_orientation_is_honoured() -> None:
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif), max_pixels=10_000)
    assert decoded.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_every_colour_mode_becomes_rgb(mode: str) -> None:
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    decoded = decode_image(encode(Image.new(mode, (16, 16)), fmt), max_pixels=10_000)
    assert decoded.mode == "RGB"


def test_a_declared_size_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(encode(Image.new("L", (300, 300)), "PNG"), max_pixels=80_000)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
)
def test_garbage_is_an_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_image(data, max_pixels=10_000)


def test_a_truncated_jpeg_is_an_invalid_image() -> None:
    whole = encode(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")
    with pytest.raises(InvalidImage):
        decode_image(whole[: len(whole) // 2], max_pixels=10_000)


def test_formats_outside_the_whitelist_are_refused() -> None:
    with pytest.raises(InvalidImage, match="not supported"):
        decode_image(encode(Image.new("RGB", (16, 16)), "BMP"), max_pixels=10_000, formats=UPLOAD_FORMATS)


def test_tiny_images_are_refused() -> None:
    with pytest.raises(InvalidImage, match="at least"):
        decode_image(encode(Image.new("RGB", (1, 1)), "PNG"), max_pixels=10_000)

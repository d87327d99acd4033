"""Decoding untrusted bytes: formats, limits, orientation."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tongkuan.domain.boxes import Box
from tongkuan.errors import ImageTooLarge, InvalidImage, ServiceBusy
from tongkuan.images.decode import DECODE_SIDE, UPLOAD_FORMATS, DecodeBudget, decode_image, decode_picture


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


def photo(data_root: Path, size: tuple[int, int]) -> Image.Image:
    """A real product photo enlarged to a phone camera's size."""
    path = data_root / "grocery_store" / "iconic" / "Alpro-Fresh-Soy-Milk_Iconic.jpg"
    return Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC)


def model_input(image: Image.Image, size: int = 260) -> np.ndarray:
    """What the encoder sees (its own resize)."""
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_large_picture_decodes_reduced_to_what_the_model_needs(data_root: Path, fmt: str) -> None:
    large = photo(data_root, (4032, 3024))
    data = encode(large, fmt, quality=92) if fmt != "PNG" else encode(large, fmt)
    picture = decode_picture(data, max_pixels=4096 * 4096)
    assert picture.size == (4032, 3024)  # boxes stay in the picture's own pixels
    assert DECODE_SIDE <= max(picture.image.size) < 2 * DECODE_SIDE
    full = Image.open(io.BytesIO(data)).convert("RGB")
    # the model's input differs by compression noise only (pixel values 0-255)
    assert np.abs(model_input(picture.image) - model_input(full)).mean() < 1.5


def test_a_turned_large_jpeg_reports_its_upright_size(data_root: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    picture = decode_picture(encode(photo(data_root, (4000, 3000)), "JPEG", exif=exif), max_pixels=4096 * 4096)
    assert picture.size == (3000, 4000)
    assert picture.image.size[1] > picture.image.size[0]


def test_boxes_map_between_the_picture_and_its_reduced_image(data_root: Path) -> None:
    picture = decode_picture(encode(photo(data_root, (4032, 3024)), "JPEG"), max_pixels=4096 * 4096)
    box = Box(1000, 3000, 500, 2500)
    on_image = picture.to_pixels(box)
    back = picture.to_picture(on_image)
    assert back.x1 <= box.x1 and back.y1 <= box.y1 and back.x2 >= box.x2 and back.y2 >= box.y2  # covers it
    assert back.area < box.area * 1.01
    whole = Box(0, picture.image.size[0], 0, picture.image.size[1])
    assert picture.to_picture(whole) == Box(0, 4032, 0, 3024)


def test_a_jpeg_too_large_even_reduced_is_refused_before_decoding() -> None:
    # 9000 x 9000 declared; reduced by 8 in the decoder it would still be 1.27 MP
    header = encode(Image.new("RGB", (16, 16)), "JPEG")
    declared = header.replace(b"\x00\x10\x00\x10", (9000).to_bytes(2, "big") * 2, 1)
    with pytest.raises(ImageTooLarge, match="9000x9000"):
        decode_picture(declared, max_pixels=1_000_000)


def test_decodes_share_a_memory_budget_and_wait_their_turn() -> None:
    data = encode(Image.new("RGB", (1000, 1000), (9, 9, 9)), "PNG")  # 8 MB at its peak
    budget = DecodeBudget(max_bytes=10_000_000, wait=30)  # one decode at a time
    with ThreadPoolExecutor(6) as pool:
        decoded = list(pool.map(lambda _: decode_image(data, 4096 * 4096, budget=budget), range(12)))
    assert all(image.size == (1000, 1000) for image in decoded)
    assert budget.used == 0


def test_a_decode_that_cannot_get_memory_in_time_is_refused() -> None:
    data = encode(Image.new("RGB", (1000, 1000)), "PNG")
    budget = DecodeBudget(max_bytes=10_000_000, wait=0.2)
    with budget.hold(9_000_000), pytest.raises(ServiceBusy, match="memory limit"):
        decode_image(data, 4096 * 4096, budget=budget)
    assert budget.used == 0
    decode_image(data, 4096 * 4096, budget=budget)  # free again


def test_the_budget_never_holds_more_than_it_has() -> None:
    budget = DecodeBudget(max_bytes=100, wait=5)
    peak = 0
    lock = threading.Lock()

    def work(nbytes: int) -> None:
        nonlocal peak
        with budget.hold(nbytes):
            with lock:
                peak = max(peak, budget.used)
            time.sleep(0.01)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, [30, 60, 90, 200, 10] * 6))  # 200: more than all of it, runs alone
    assert peak <= 100 and budget.used == 0


def progressive_jpeg(side: int) -> bytes:
    """A progressive JPEG of one colour: about 12 bytes per 10,000 pixels on disk."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (40, 80, 120)).save(out, "JPEG", progressive=True, quality=5, subsampling=0)
    return out.getvalue()


def test_a_progressive_jpeg_counts_its_whole_frame_against_the_pixel_limit() -> None:
    # a baseline JPEG of 3000x3000 decodes reduced by 2 (2.25 MP); a progressive one keeps every
    # coefficient of the whole frame while it decodes, reduced or not
    baseline = encode(Image.new("RGB", (3000, 3000), (40, 80, 120)), "JPEG")
    assert decode_picture(baseline, max_pixels=4_000_000).image.size == (1500, 1500)
    with pytest.raises(ImageTooLarge, match="3000x3000 pixels.*progressive"):
        decode_picture(progressive_jpeg(3000), max_pixels=4_000_000)


class RecordingBudget(DecodeBudget):
    def __init__(self) -> None:
        super().__init__(max_bytes=10**10, wait=1)
        self.held: list[int] = []

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        self.held.append(nbytes)
        with super().hold(nbytes):
            yield


def test_a_progressive_jpeg_is_charged_for_the_coefficients_the_decoder_keeps() -> None:
    # libjpeg keeps 2 bytes per sample of every component over the whole frame (measured:
    # a 9400x9400 one, 1 MB on disk, took 514 MB to decode reduced to 1175x1175)
    budget = RecordingBudget()
    picture = decode_picture(progressive_jpeg(2048), max_pixels=4096 * 4096, budget=budget)
    assert picture.image.size == (1024, 1024) and picture.size == (2048, 2048)
    baseline = RecordingBudget()
    decode_picture(encode(Image.new("RGB", (2048, 2048)), "JPEG"), max_pixels=4096 * 4096, budget=baseline)
    assert budget.held[0] - baseline.held[0] >= 2048 * 2048 * 3 * 2  # three full components

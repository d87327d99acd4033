"""Augmented views of a catalog picture that look like a shopper's photo of the product.

A catalog of one studio shot per product still has to teach the model what stays the same
when a shopper photographs that product: the crop, the angle, the distance (small, blurry,
low-resolution pictures), the light and white balance, the JPEG, a hand or a price tag in
front, and a shelf or a table behind. Each function below imitates one of these; each takes
a PIL image and a numpy `Generator` and returns a new RGB image, so a view is reproducible
from its seed and each effect can be tested alone. `shopper_view` composes them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageFilter

Rng = np.random.Generator

# How often `shopper_view` applies each effect (measured on grocery photos: more than this
# and the clean studio look disappears from training altogether).
P_BACKGROUND = 0.3
P_PERSPECTIVE = 0.5
P_ROTATE = 0.5
P_DOWNSCALE = 0.3
P_BLUR = 0.3
P_NOISE = 0.3
P_COLOUR = 0.8
P_OCCLUDE = 0.2
P_JPEG = 0.5


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _array(image: Image.Image) -> NDArray[np.uint8]:
    return np.asarray(_rgb(image), dtype=np.uint8)


def random_resized_crop(
    image: Image.Image,
    rng: Rng,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """A crop covering `scale` of the area at an aspect ratio in `ratio`, left at its own size:
    a shopper rarely frames the product the way the studio did."""
    image = _rgb(image)
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        w = int(round(np.sqrt(target * aspect)))
        h = int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return image.crop((left, top, left + w, top + h))
    side = min(width, height)  # fall back to a centre square
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def perspective(image: Image.Image, rng: Rng, distortion: float = 0.2) -> Image.Image:
    """Move each corner inwards by up to `distortion` of the side: the product seen at an angle."""
    pixels = _array(image)
    height, width = pixels.shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    inward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float32)
    shift = rng.uniform(0, distortion, size=(4, 2)).astype(np.float32) * np.array([width, height], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners, corners + inward * shift)
    warped = cv2.warpPerspective(pixels, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(warped)


def rotate(image: Image.Image, rng: Rng, degrees: float = 15.0) -> Image.Image:
    """Rotate by up to ±`degrees`, corners filled from the edge (no black wedges to learn)."""
    pixels = _array(image)
    height, width = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-degrees, degrees)), 1.0)
    return Image.fromarray(cv2.warpAffine(pixels, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101))


def downscale(image: Image.Image, rng: Rng, smallest: int = 100) -> Image.Image:
    """Shrink the longer side to between `smallest` px and its size, then scale back up: a
    product photographed from afar, or a small in-store crop."""
    image = _rgb(image)
    longest = max(image.size)
    if longest <= smallest:
        return image.copy()
    target = int(rng.integers(smallest, longest + 1))
    factor = target / longest
    small = image.resize(
        (max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.BILINEAR
    )
    return small.resize(image.size, Image.Resampling.BILINEAR)


def blur(image: Image.Image, rng: Rng, max_radius: float = 2.0) -> Image.Image:
    """Gaussian blur of radius 0.6 to `max_radius` px: focus and hand shake."""
    return _rgb(image).filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, max_radius))))


def add_noise(image: Image.Image, rng: Rng, sigma: tuple[float, float] = (2.0, 12.0)) -> Image.Image:
    """Gaussian sensor noise with a standard deviation in `sigma` (0-255 scale)."""
    pixels = _array(image).astype(np.float32)
    noisy = pixels + rng.normal(0.0, rng.uniform(*sigma), size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def jitter_colour(
    image: Image.Image,
    rng: Rng,
    brightness: float = 0.3,
    contrast: float = 0.3,
    saturation: float = 0.3,
    white_balance: float = 0.1,
) -> Image.Image:
    """Brightness, contrast and saturation each by up to ±30 %, and a white-balance cast
    (each channel's gain by up to ±10 %): shop lighting is never the studio's."""
    out = _rgb(image)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(1 - brightness, 1 + brightness)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(1 - contrast, 1 + contrast)))
    out = ImageEnhance.Color(out).enhance(float(rng.uniform(1 - saturation, 1 + saturation)))
    gains = rng.uniform(1 - white_balance, 1 + white_balance, size=3).astype(np.float32)
    cast = np.asarray(out, dtype=np.float32) * gains
    return Image.fromarray(np.clip(cast, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, rng: Rng, quality: tuple[int, int] = (30, 90)) -> Image.Image:
    """Re-encode as JPEG at a quality in `quality`: messaging apps and uploads recompress."""
    buffer = io.BytesIO()
    _rgb(image).save(buffer, format="JPEG", quality=int(rng.integers(quality[0], quality[1] + 1)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def occlude(image: Image.Image, rng: Rng, max_fraction: float = 0.25) -> Image.Image:
    """Cover a rectangle of 5 % to `max_fraction` of the area with a flat colour or noise: a
    hand, a price tag, another product in front."""
    pixels = _array(image).copy()
    height, width = pixels.shape[:2]
    area = rng.uniform(0.05, max_fraction) * width * height
    aspect = float(np.exp(rng.uniform(np.log(0.3), np.log(3.3))))
    w = max(1, min(width, int(np.sqrt(area * aspect))))
    h = max(1, min(height, int(np.sqrt(area / aspect))))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    if rng.random() < 0.5:
        pixels[top : top + h, left : left + w] = rng.integers(0, 256, size=3, dtype=np.uint8)
    else:
        pixels[top : top + h, left : left + w] = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _foreground_mask(pixels: NDArray[np.uint8], tolerance: float = 30.0) -> NDArray[np.float32]:
    """Where the picture differs from its border colour (a studio backdrop), softened; all ones
    when nearly everything differs (a photo with no plain backdrop: paste it whole)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).astype(np.float32)
    backdrop = np.median(border, axis=0)
    distance = np.linalg.norm(pixels.astype(np.float32) - backdrop, axis=2)
    if np.mean(np.linalg.norm(border - backdrop, axis=1) < tolerance) < 0.8:
        return np.ones(pixels.shape[:2], dtype=np.float32)
    mask = (distance > tolerance).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    soft = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 0)
    if soft.mean() < 0.05:  # nothing found: keep the whole picture
        return np.ones(pixels.shape[:2], dtype=np.float32)
    return np.asarray(soft, dtype=np.float32)


def paste_on_background(
    image: Image.Image, background: Image.Image, rng: Rng, scale: tuple[float, float] = (0.45, 0.9)
) -> Image.Image:
    """The product, its plain backdrop cut away where it has one, pasted at `scale` of the
    output's side somewhere on a random crop of `background` (a real shelf or table photo).
    The output has the product picture's size."""
    product = _rgb(image)
    width, height = product.size
    scene = random_resized_crop(background, rng, scale=(0.3, 1.0)).resize((width, height), Image.Resampling.BILINEAR)
    factor = rng.uniform(*scale)
    w, h = max(1, int(width * factor)), max(1, int(height * factor))
    small = np.asarray(product.resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
    alpha = _foreground_mask(small)[:, :, None]
    out = np.asarray(scene, dtype=np.float32).copy()
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    region = out[top : top + h, left : left + w]
    out[top : top + h, left : left + w] = alpha * small + (1 - alpha) * region
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def shopper_view(
    image: Image.Image, rng: Rng, backgrounds: Sequence[Image.Image] = (), p_background: float = P_BACKGROUND
) -> Image.Image:
    """One random shopper's-photo view of a catalog picture: each effect above applied with its
    `P_*` probability, in the order a camera would introduce them (scene, framing, optics,
    light, sensor, compression). Resize to the model's input afterwards."""
    out = _rgb(image)
    if backgrounds and rng.random() < p_background:
        out = paste_on_background(out, backgrounds[int(rng.integers(len(backgrounds)))], rng)
    if rng.random() < P_OCCLUDE:
        out = occlude(out, rng)
    if rng.random() < P_PERSPECTIVE:
        out = perspective(out, rng)
    if rng.random() < P_ROTATE:
        out = rotate(out, rng)
    out = random_resized_crop(out, rng)
    if rng.random() < P_DOWNSCALE:
        out = downscale(out, rng)
    if rng.random() < P_BLUR:
        out = blur(out, rng)
    if rng.random() < P_COLOUR:
        out = jitter_colour(out, rng)
    if rng.random() < P_NOISE:
        out = add_noise(out, rng)
    if rng.random() < P_JPEG:
        out = jpeg(out, rng)
    return out
